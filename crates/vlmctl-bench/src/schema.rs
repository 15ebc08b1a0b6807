//! The nav answer check, on `content` only (never `reasoning_content`):
//! strategy 1 = the whole content is valid JSON matching the schema; 2 = a JSON object taken
//! from a fenced block or the first balanced `{...}` matches; 3 = only a loose keyword fallback
//! finds an action. Pass = 1 or 2; 3 is a miss.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The schema of a nav answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NavSchema {
    /// Keys that must be present.
    #[serde(default = "default_required")]
    pub required: Vec<String>,
    /// Allowed values of `action`.
    #[serde(default = "default_actions")]
    pub actions: Vec<String>,
}

impl Default for NavSchema {
    fn default() -> Self {
        Self {
            required: default_required(),
            actions: default_actions(),
        }
    }
}

fn default_required() -> Vec<String> {
    vec!["action".into(), "reason".into()]
}
fn default_actions() -> Vec<String> {
    ["forward", "left", "right", "brake", "stop", "backward"]
        .map(str::to_owned)
        .to_vec()
}

/// How an answer was understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Whole content is schema-valid JSON.
    WholeJson,
    /// Extracted JSON object is schema-valid.
    Extracted,
    /// Only a keyword was found: a miss.
    Keyword,
    /// Nothing usable.
    None,
}

impl Strategy {
    /// Strategy 1 or 2.
    #[must_use]
    pub fn passes(self) -> bool {
        matches!(self, Self::WholeJson | Self::Extracted)
    }
}

impl NavSchema {
    fn valid(&self, v: &Value) -> bool {
        let Some(obj) = v.as_object() else {
            return false;
        };
        self.required.iter().all(|k| obj.contains_key(k))
            && obj.get("action").and_then(Value::as_str).is_some_and(|a| {
                self.actions
                    .iter()
                    .any(|x| x.eq_ignore_ascii_case(a.trim()))
            })
    }

    /// Classifies `content`.
    #[must_use]
    pub fn check(&self, content: &str) -> Strategy {
        let t = content.trim();
        if serde_json::from_str::<Value>(t).is_ok_and(|v| self.valid(&v)) {
            return Strategy::WholeJson;
        }
        if let Some(v) = fenced(t).or_else(|| first_object(t))
            && self.valid(&v)
        {
            return Strategy::Extracted;
        }
        let lower = t.to_ascii_lowercase();
        if self.actions.iter().any(|a| lower.contains(a.as_str())) {
            Strategy::Keyword
        } else {
            Strategy::None
        }
    }
}

/// The JSON in a fenced (triple-backtick) block.
fn fenced(t: &str) -> Option<Value> {
    let start = t.find("```")?;
    let rest = &t[start + 3..];
    let body_start = rest.find('\n').map_or(0, |i| i + 1);
    let body = &rest[body_start..];
    let end = body.find("```")?;
    serde_json::from_str(body[..end].trim()).ok()
}

/// The first balanced `{...}` (string-aware) that parses.
fn first_object(t: &str) -> Option<Value> {
    let bytes = t.as_bytes();
    let mut search = 0;
    while let Some(off) = t[search..].find('{') {
        let start = search + off;
        let (mut depth, mut in_str, mut esc) = (0i32, false, false);
        for (i, &b) in bytes.iter().enumerate().skip(start) {
            if in_str {
                match (esc, b) {
                    (true, _) => esc = false,
                    (false, b'\\') => esc = true,
                    (false, b'"') => in_str = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_str = true,
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        if let Ok(v) = serde_json::from_str(&t[start..=i]) {
                            return Some(v);
                        }
                        break;
                    }
                }
                _ => {}
            }
        }
        search = start + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_strategies() {
        let s = NavSchema::default();
        assert_eq!(
            s.check(r#"{"action": "forward", "reason": "clear path"}"#),
            Strategy::WholeJson
        );
        assert_eq!(
            s.check("```json\n{\"action\": \"left\", \"reason\": \"wall\"}\n```"),
            Strategy::Extracted
        );
        assert_eq!(
            s.check(r#"Sure! {"action": "brake", "reason": "a {brace} in \"text\""} done"#),
            Strategy::Extracted
        );
        assert_eq!(s.check("I would turn left here."), Strategy::Keyword);
        assert_eq!(
            s.check(r#"{"action": "fly", "reason": "x"}"#),
            Strategy::None
        );
        assert_eq!(
            s.check(r#"{"action": "forward"}"#),
            Strategy::Keyword,
            "missing reason"
        );
        assert_eq!(s.check(""), Strategy::None);
        assert!(Strategy::Extracted.passes() && !Strategy::Keyword.passes());
    }
}
