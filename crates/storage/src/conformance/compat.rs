use crate::RepositoryFactory;
pub async fn compat_sessions_and_tokens(_f: &dyn RepositoryFactory) {
    todo!()
}
pub async fn compat_sso_login(_f: &dyn RepositoryFactory) {
    todo!()
}
