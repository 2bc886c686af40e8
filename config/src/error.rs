//! The crate's error type.

use std::path::PathBuf;

/// Everything that can be wrong with a configuration.
///
/// Each message names where the problem is: the file (with line and
/// column for JSON syntax), the key (`interfaces[0].masklen`, or the
/// `LKL_HIJACK_*` variable it came from), the value, and what to write
/// instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file could not be read.
    #[error("{}: cannot read the configuration file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What reading it returned.
        source: std::io::Error,
    },
    /// The configuration file is empty (or only white space): that is not
    /// JSON, and most likely not what was meant.
    #[error("{}: the configuration file is empty, which is not JSON: write {{}} for no settings, or fill it in (see the keys in docs/hijack.md)", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The file is not JSON.
    #[error("{origin}:{line}:{column}: malformed JSON: {message}")]
    Syntax {
        /// The file name, or `<string>` for text parsed from memory.
        origin: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// serde_json's description.
        message: String,
    },
    /// A key that the schema does not have.
    #[error("{origin}: {key}: unknown key{suggestion}; valid keys here: {valid}")]
    UnknownKey {
        /// The file name, or `<string>`.
        origin: String,
        /// Its path (`interfaces[1].gatway`).
        key: String,
        /// `" (did you mean \"gateway\"?)"` when one is close, else empty.
        suggestion: String,
        /// The keys allowed at that place, comma separated.
        valid: String,
    },
    /// A value of the wrong JSON type (upstream's values are strings).
    #[error("{origin}: {key}: expected {expected}, found {found}")]
    Type {
        /// The file name, or `<string>`.
        origin: String,
        /// The key's path.
        key: String,
        /// What the schema wants there.
        expected: &'static str,
        /// The JSON type found.
        found: &'static str,
    },
    /// A value that does not parse, or is out of range.
    #[error("{key}: {value:?} {reason}")]
    Invalid {
        /// The key's path, with the variable it came from if any
        /// (`interfaces[0].masklen (LKL_HIJACK_NET_NETMASK_LEN)`).
        key: String,
        /// The value as given.
        value: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A key that another key needs is absent.
    #[error("{key}: missing: {reason}")]
    Missing {
        /// The key's path.
        key: String,
        /// Why it is needed and what to write.
        reason: String,
    },
}
