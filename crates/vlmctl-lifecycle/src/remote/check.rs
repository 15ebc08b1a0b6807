//! [`check`]: each wanted file as the host has it, hashed there only when its stamp does not
//! vouch for it; stamps written for files that verified, removed from the others.

use std::fmt::Write as _;

use super::helper::Helper;
use super::stamp::{
    FirstLook, Hashed, Looked, STAT_FORMAT, by_index, judge_hash, judge_look, stamp_path,
};
use super::want::{Found, Want};
use crate::LifecycleError;
use crate::shell::sh_quote;

/// Each wanted file as the host has it: missing, of another size, unchanged since it verified
/// there (its stamp matches: not hashed), or hashed there now. Stamps are written for files
/// that verified (see [`super::HostStamp`]) and removed from files that did not.
pub async fn check(helper: &Helper<'_>, wants: &[Want]) -> Result<Vec<Found>, LifecycleError> {
    // 1. stat and stamp of every file.
    let mut script = String::new();
    for (i, w) in wants.iter().enumerate() {
        // `./`: a name starting with `-` is a file, not an option.
        let q = sh_quote(&format!("./{}", w.name));
        let st = sh_quote(&format!("./{}", stamp_path(&w.name)));
        let _ = write!(
            script,
            "if [ -f {q} ]; then echo {i} stat \"$(stat -L -c '{STAT_FORMAT}' {q})\"; \
             [ -f {st} ] && echo {i} stamp \"$(head -c 4096 {st} | tr -d '\\n')\"; fi; "
        );
    }
    script.push_str("true");
    let (_, out) = helper.sh(&script).await?;
    let looked = by_index(&out);
    let mut found: Vec<Option<Found>> = Vec::with_capacity(wants.len());
    let mut to_hash = Vec::new();
    for (i, w) in wants.iter().enumerate() {
        let l = looked.get(&i);
        let look = Looked {
            stat: l.and_then(|m| m.get("stat")).cloned(),
            stamp: l.and_then(|m| m.get("stamp")).cloned(),
        };
        match judge_look(w, &look) {
            FirstLook::Known(f) => found.push(Some(f)),
            FirstLook::Hash => {
                found.push(None);
                to_hash.push(i);
            }
        }
    }
    if to_hash.is_empty() {
        return Ok(found
            .into_iter()
            .map(|f| f.unwrap_or(Found::Missing))
            .collect());
    }
    // 2. Hash what must be, with the clock and stat around each hash.
    let mut script = String::new();
    for &i in &to_hash {
        let w = &wants[i];
        let q = sh_quote(&format!("./{}", w.name));
        // Unique to this shell (`$$` outside the quotes).
        let clock = format!(
            "{}-$$",
            sh_quote(&format!("./{}.clock", stamp_path(&w.name)))
        );
        let _ = write!(
            script,
            "c={clock}; : > \"$c\" && echo {i} clock \"$(stat -c '%Y %y' \"$c\")\"; rm -f \"$c\"; \
             if [ -f {q} ]; then echo {i} before \"$(stat -L -c '{STAT_FORMAT}' {q})\"; \
             echo {i} sha \"$(sha256sum < {q})\"; \
             echo {i} after \"$(stat -L -c '{STAT_FORMAT}' {q})\"; fi; "
        );
    }
    script.push_str("true");
    let (_, out) = helper.sh(&script).await?;
    let hashed = by_index(&out);
    // 3. Stamps written (atomically: a new file renamed) or removed.
    let mut script = String::new();
    for &i in &to_hash {
        let w = &wants[i];
        let h = hashed.get(&i);
        let get = |k: &str| h.and_then(|m| m.get(k)).cloned();
        let (f, stamp) = judge_hash(
            w,
            &Hashed {
                clock: get("clock"),
                before: get("before"),
                sha256: get("sha"),
                after: get("after"),
            },
        );
        let st = sh_quote(&format!("./{}", stamp_path(&w.name)));
        match stamp.and_then(|s| serde_json::to_string(&s).ok()) {
            Some(json) => {
                let tmp = format!("{}-$$", sh_quote(&format!("./{}.new", stamp_path(&w.name))));
                let _ = write!(
                    script,
                    "printf '%s\\n' {} > {tmp} && mv {tmp} {st}; ",
                    sh_quote(&json)
                );
            }
            None => {
                let _ = write!(script, "rm -f {st}; ");
            }
        }
        found[i] = Some(f);
    }
    script.push_str("true");
    // Best effort: without a stamp the next check hashes again, nothing worse.
    let _ = helper.sh(&script).await;
    Ok(found
        .into_iter()
        .map(|f| f.unwrap_or(Found::Missing))
        .collect())
}
