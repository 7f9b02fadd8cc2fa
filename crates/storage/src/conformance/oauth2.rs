use crate::RepositoryFactory;
pub async fn clients(_f: &dyn RepositoryFactory) {
    todo!()
}
pub async fn grant_lifecycle(_f: &dyn RepositoryFactory) {
    todo!()
}
pub async fn code_exchange_is_single_use(_f: &dyn RepositoryFactory) {
    todo!()
}
pub async fn sessions_and_tokens(_f: &dyn RepositoryFactory) {
    todo!()
}
pub async fn refresh_rotation_is_single_use(_f: &dyn RepositoryFactory) {
    todo!()
}
