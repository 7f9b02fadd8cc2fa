//! The [`Secret`] newtype: a string that never shows up in `Debug` output and
//! that [`crate::Config::redacted`] replaces with `"[redacted]"`.

use std::cell::Cell;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize, Serializer};

/// Placeholder written instead of a secret value by [`crate::Config::redacted`].
pub const REDACTED: &str = "[redacted]";

thread_local! {
    static REDACTING: Cell<bool> = const { Cell::new(false) };
}

/// A secret string (password, client secret, key material, database URI...).
///
/// `Debug` prints `[redacted]`; serialization writes the real value (so that
/// `config generate` can write it), except within [`crate::Config::redacted`],
/// which replaces every secret with `"[redacted]"`.
#[derive(Clone, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(transparent)]
#[schemars(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Consumes the wrapper, returning the secret value.
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if REDACTING.with(Cell::get) {
            serializer.serialize_str(REDACTED)
        } else {
            serializer.serialize_str(&self.0)
        }
    }
}

/// Runs `f` with every [`Secret`] serialized (on this thread) as `[redacted]`.
pub(crate) fn with_redaction<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            let previous = self.0;
            REDACTING.with(|r| r.set(previous));
        }
    }
    let _reset = Reset(REDACTING.with(|r| r.replace(true)));
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_and_serialize_shows() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"hunter2\"");
        let hidden = with_redaction(|| serde_json::to_string(&s).unwrap());
        assert_eq!(hidden, "\"[redacted]\"");
        // The flag is reset afterwards.
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"hunter2\"");
    }
}
