//! An error and its sources as one line (`error: cause: cause`), for evidence, reports, the
//! history and the service's answers: the one place the chain is flattened, so that every
//! front-end and library says a failure the same way.

use std::error::Error;

/// `e`, then each of its sources, joined by `": "`.
#[must_use]
pub fn one_line(e: &dyn Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::one_line;
    use std::fmt;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);
    impl fmt::Display for E {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn each_source_follows_its_error_once() {
        let e = E(
            "cannot read plan.toml",
            Some(Box::new(E(
                "io error",
                Some(Box::new(E("permission denied", None))),
            ))),
        );
        assert_eq!(
            one_line(&e),
            "cannot read plan.toml: io error: permission denied"
        );
        assert_eq!(one_line(&E("alone", None)), "alone");
    }
}
