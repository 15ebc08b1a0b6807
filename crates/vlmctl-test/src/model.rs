//! The test model every crate's real-environment tests deploy: Gemma 3 270M (`Q4_K_M` GGUF, the
//! file `scripts/test` downloads and exports as `VLMCTL_TEST_MODEL`), served by the fake hub
//! under a made-up repository and commit, and the weights lock that pins it.

use std::path::Path;

use crate::Env;

/// The repository the fake hub serves the model under.
pub const REPO: &str = "vlmctl-test/gemma-3-270m-GGUF";
/// The commit the fake hub reports for [`REPO`].
pub const COMMIT: &str = "0000000000000000000000000000000000000001";
/// The model file's name in [`REPO`].
pub const FILE: &str = "gemma-3-270m-q4_k_m.gguf";
/// The model file's sha256.
pub const SHA256: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";
/// The model file's size in bytes.
pub const SIZE: u64 = 253_113_024;

/// The model's bytes (the file `VLMCTL_TEST_MODEL` names), for the fake hub to serve.
///
/// # Panics
/// When the variable is unset ([`Env::require`]) or the file cannot be read.
#[must_use]
pub fn bytes() -> Vec<u8> {
    std::fs::read(Env::require("VLMCTL_TEST_MODEL")).expect("read the model VLMCTL_TEST_MODEL")
}

/// A weights lock (`weights.lock`) pinning the model as `name`, its files kept in `dir`.
#[must_use]
pub fn lock(name: &str, dir: &Path) -> String {
    format!(
        "version = 1\n[[model]]\nname = \"{name}\"\nrepo = \"{REPO}\"\nrevision = \"{COMMIT}\"\ndir = \"{}\"\n\
         [[model.file]]\npath = \"{FILE}\"\nrole = \"model\"\nsize = {SIZE}\nsha256 = \"{SHA256}\"\n",
        dir.display()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_lock_pins_the_served_file() {
        let lock = super::lock("m", std::path::Path::new("/models"));
        assert!(
            lock.contains("name = \"m\"") && lock.contains("dir = \"/models\""),
            "{lock}"
        );
        assert!(lock.contains("size = 253113024"), "{lock}");
        assert!(
            lock.contains(super::SHA256) && lock.contains(super::COMMIT),
            "{lock}"
        );
    }
}
