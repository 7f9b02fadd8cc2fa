use crate::RepositoryFactory;
pub async fn job_queue(_f: &dyn RepositoryFactory) {
    todo!()
}
