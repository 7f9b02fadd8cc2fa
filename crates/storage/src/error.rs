use vestibule_domain::InvalidTransition;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong in a repository call.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database could not be reached or timed out: a 503, retryable.
    #[error("the database is unavailable")]
    Unavailable(#[source] BoxError),
    /// A uniqueness rule was violated (e.g. the username is taken).
    #[error("a row with the same unique key already exists")]
    UniqueViolation(#[source] BoxError),
    /// A compare-and-set lost: a single-use thing was already used, or the
    /// row changed under us.
    #[error("the {0} was changed concurrently or was already used")]
    ConcurrentUpdate(&'static str),
    /// The entity does not allow this move.
    #[error(transparent)]
    InvalidTransition(#[from] InvalidTransition),
    /// The database holds something this code cannot read.
    #[error("invalid data in the database: {0}")]
    InvalidData(String),
    #[error("database error")]
    Database(#[source] BoxError),
}

impl StorageError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}
