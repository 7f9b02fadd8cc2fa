use crate::RepositoryFactory;
pub async fn upstream_providers_links_sessions(_f: &dyn RepositoryFactory) {
    todo!()
}
