use crate::RepositoryFactory;
pub async fn browser_sessions(_f: &dyn RepositoryFactory) {
    todo!()
}
