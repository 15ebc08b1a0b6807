//! `vlmctl weights verify` on the real Gemma 3 270M GGUF (`VLMCTL_TEST_MODEL`): the intact file
//! passes; a truncated copy and a copy whose tensor count was corrupted fail the GGUF structure
//! check with the expected and found numbers; one flipped byte in tensor data fails sha256.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::common::{Env, run, vlmctl};

const SHA256: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";
const SIZE: u64 = 253_113_024;
const FILE: &str = "gemma-3-270m-q4_k_m.gguf";

fn lock_text(dir: &Path) -> String {
    format!(
        "version = 1\n\n[[model]]\nname = \"gemma-3-270m\"\nrepo = \"ggml-org/gemma-3-270m-GGUF\"\n\
         revision = \"0123456789abcdef0123456789abcdef01234567\"\ndir = \"{}\"\n\n\
         [[model.file]]\npath = \"{FILE}\"\nrole = \"model\"\nsize = {SIZE}\nsha256 = \"{SHA256}\"\n",
        dir.display()
    )
}

/// A model dir holding `FILE` made by `make` from the real model, and its lock.
fn setup(make: impl FnOnce(&Path, &Path)) -> (tempfile::TempDir, PathBuf) {
    let model = PathBuf::from(Env::require("VLMCTL_TEST_MODEL"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("models");
    fs::create_dir(&dir).unwrap();
    make(&model, &dir.join(FILE));
    let lock = tmp.path().join("weights.lock");
    fs::write(&lock, lock_text(&dir)).unwrap();
    (tmp, lock)
}

fn verify(lock: &Path) -> (i32, String, String) {
    run(vlmctl().args(["weights", "verify", "--lock"]).arg(lock))
}

#[test]
fn intact_model_verifies() {
    let (_tmp, lock) = setup(|src, dst| {
        if fs::hard_link(src, dst).is_err() {
            fs::copy(src, dst).unwrap();
        }
    });
    let (code, out, err) = verify(&lock);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("OK (GGUF v3,"), "{out}");
    assert!(out.contains("gemma3"), "{out}");
    let (code, json, _) = run(vlmctl()
        .args(["weights", "verify", "--json", "--lock"])
        .arg(&lock));
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["files"][0]["status"]["status"], "ok");
}

#[test]
fn truncated_copy_fails_structure_with_numbers() {
    let cut = SIZE * 6 / 10;
    let (_tmp, lock) = setup(|src, dst| {
        let mut data = Vec::new();
        fs::File::open(src)
            .unwrap()
            .take(cut)
            .read_to_end(&mut data)
            .unwrap();
        fs::write(dst, data).unwrap();
    });
    let (code, out, _) = verify(&lock);
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains(&format!("but the file has {cut} bytes")),
        "{out}"
    );
    assert!(
        out.contains("FAIL: bad GGUF: tensor data ends at byte"),
        "{out}"
    );
}

#[test]
fn corrupted_tensor_count_fails_structure_naming_both_counts() {
    let (_tmp, lock) = setup(|src, dst| {
        fs::copy(src, dst).unwrap();
        let mut f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dst)
            .unwrap();
        let mut count = [0u8; 8];
        f.seek(SeekFrom::Start(8)).unwrap();
        f.read_exact(&mut count).unwrap();
        let real = u64::from_le_bytes(count);
        f.seek(SeekFrom::Start(8)).unwrap();
        f.write_all(&(real + 1000).to_le_bytes()).unwrap();
    });
    let (code, out, _) = verify(&lock);
    assert_eq!(code, 4, "{out}");
    // Gemma 3 270M has 236 tensors.
    assert!(
        out.contains("header claims 1236 tensors but only 236 tensor infos could be read"),
        "{out}"
    );
}

#[test]
fn one_flipped_byte_fails_sha256() {
    let (_tmp, lock) = setup(|src, dst| {
        fs::copy(src, dst).unwrap();
        let mut f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dst)
            .unwrap();
        let at = SIZE / 2;
        let mut b = [0u8; 1];
        f.seek(SeekFrom::Start(at)).unwrap();
        f.read_exact(&mut b).unwrap();
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&[b[0] ^ 0x01]).unwrap();
    });
    let (code, out, _) = verify(&lock);
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains(&format!("sha256 mismatch: expected {SHA256}, computed")),
        "{out}"
    );
    assert!(
        out.contains("delete it and download or copy it again"),
        "{out}"
    );
}

/// The test projector (`VLMCTL_TEST_MMPROJ`, architecture `clip`), as a user copies it from
/// another host: `weights adopt` places it beside the model (the repository's CPU lock), and
/// `weights verify` shows both files with their architectures.
#[test]
fn the_projector_is_adopted_and_verified_as_a_clip_gguf() {
    let mmproj = PathBuf::from(Env::require("VLMCTL_TEST_MMPROJ"));
    let model = PathBuf::from(Env::require("VLMCTL_TEST_MODEL"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("models");
    let lock = crate::common::repo_root().join("examples/cpu-test.lock");
    let (code, out, err) = run(vlmctl()
        .args(["weights", "adopt"])
        .arg(&mmproj)
        .arg(&model)
        .arg("--lock")
        .arg(&lock)
        .arg("--dir")
        .arg(&dir));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("mmproj  ") && out.contains("mmproj-gemma3-270m-test.gguf"),
        "{out}"
    );
    let (code, out, err) = run(vlmctl()
        .args(["weights", "verify", "--lock"])
        .arg(&lock)
        .arg("--dir")
        .arg(&dir));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("model   OK (GGUF v3, 236 tensors, gemma3)"),
        "{out}"
    );
    assert!(
        out.contains("mmproj  OK (GGUF v3, 23 tensors, clip)"),
        "{out}"
    );
}
