//! The errors of how clients reach a deployment ([`ClientError`]): its API key file (read,
//! refused, made) and the network interface its spec binds. Each names the file or the
//! interface, never the key; each has a hint and, in the CLI, an exit code: 3 for what the user
//! fixes in a file or the spec, 5 for what the machine lacks ([`ClientError::is_environment`]).

use std::path::PathBuf;

/// A key file or a bound interface that does not do.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The spec's API key file cannot be read (missing, not a regular file, no permission).
    #[error("cannot read the API key file {} that the spec names: {why}", path.display())]
    KeyFileUnreadable {
        /// The file.
        path: PathBuf,
        /// What the system said.
        why: String,
    },
    /// The spec's API key file may be read or written by others than its owner.
    #[error(
        "the API key file {} has mode {mode:04o}: others than its owner may read or change it, \
         so its key is refused",
        path.display()
    )]
    KeyFileLoose {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key in the spec's API key file is too short to be one (also: it has none).
    #[error(
        "the API key in {} has {len} characters; at least {} are needed",
        path.display(),
        crate::plan::MIN_API_KEY_LEN
    )]
    KeyFileTooShort {
        /// The file.
        path: PathBuf,
        /// The key's length.
        len: usize,
    },
    /// `vlmctl key new` was given a path where something already is.
    #[error("{} already exists: a key file is never replaced", path.display())]
    KeyFileExists {
        /// The path.
        path: PathBuf,
    },
    /// A new key file could not be written.
    #[error("cannot write the key file {}", path.display())]
    KeyFileWrite {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The interface a spec's `server.host` names has no address here.
    #[error("cannot bind the address of interface {name} (the spec's server.host): {why}")]
    InterfaceAddress {
        /// The interface.
        name: String,
        /// Why.
        why: String,
    },
    /// A spec's `server.host` names an interface, and the deployment is on another host.
    #[error(
        "the spec's server.host names interface {name}, which vlmctl resolves on this machine \
         only, and the deployment is on {host}"
    )]
    InterfaceUnderHost {
        /// The interface.
        name: String,
        /// The other host.
        host: String,
    },
    /// `vlmctl client`: the deployment does not answer at its address.
    #[error("{deployment} does not answer at {url}: {why}")]
    NotServing {
        /// The deployment.
        deployment: String,
        /// Where it was asked.
        url: String,
        /// What the request said.
        why: String,
    },
}

impl ClientError {
    /// Whether the machine lacks something (exit 5: an interface without an address, a key
    /// file that cannot be written, a deployment not running), rather than a file or spec to
    /// fix (exit 3).
    #[must_use]
    pub fn is_environment(&self) -> bool {
        matches!(
            self,
            Self::KeyFileWrite { .. } | Self::InterfaceAddress { .. } | Self::NotServing { .. }
        )
    }

    /// What the user should do next.
    #[must_use]
    pub fn hint(&self) -> String {
        match self {
            Self::KeyFileUnreadable { path, .. } => format!(
                "make one with `vlmctl key new --file {}` (mode 0600), or fix the spec's \
                 `server.api_key_file`",
                path.display()
            ),
            Self::KeyFileLoose { path, .. } => format!(
                "`chmod 600 {}` (and make a new key if others may have read it: `vlmctl key new \
                 --file PATH`)",
                path.display()
            ),
            Self::KeyFileTooShort { path, .. } => format!(
                "move {} away and make a long random key there: `vlmctl key new --file {}`",
                path.display(),
                path.display()
            ),
            Self::KeyFileExists { .. } => {
                "pick another path, or remove the old file first if no client uses its key"
                    .to_owned()
            }
            Self::KeyFileWrite { .. } => "the folder must exist and be writable by you".to_owned(),
            Self::InterfaceAddress { name, .. } => format!(
                "`ip addr show dev {name}` lists this machine's addresses of {name}: give one \
                 as server.host, or name an interface that has one"
            ),
            Self::NotServing { deployment, .. } => format!(
                "`vlmctl status` shows whether {deployment} runs; `vlmctl provision` (with the \
                 same --spec) starts it and prints its client settings"
            ),
            Self::InterfaceUnderHost { name, host } => format!(
                "give the address instead: `ssh {host} ip -o addr show dev {name}` shows it \
                 (server.host = \"ADDRESS\")"
            ),
        }
    }
}
