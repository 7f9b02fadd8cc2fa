use crate::RepositoryFactory;
pub async fn device_code_lifecycle(_f: &dyn RepositoryFactory) {
    todo!()
}
