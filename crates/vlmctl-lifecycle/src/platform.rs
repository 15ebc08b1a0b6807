//! The platform gate: does the image have a manifest for the platform we will run on (the
//! engine's host's, for `platform = "host"`)?
//! Decided by a pure function over the platforms the registry lists; the daemon's distribution
//! endpoint (what `docker manifest inspect` asks) supplies them.

use std::fmt;

use bollard::Docker;

use crate::LifecycleError;

/// An OCI platform, `os/architecture[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Platform {
    /// e.g. `linux`.
    pub os: String,
    /// e.g. `amd64`, `arm64`.
    pub architecture: String,
    /// e.g. `v8`.
    pub variant: Option<String>,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// Parses `os/arch[/variant]`.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('/');
        let os = parts.next().filter(|p| !p.is_empty())?;
        let architecture = parts.next().filter(|p| !p.is_empty())?;
        let variant = parts.next().map(str::to_owned);
        if parts.next().is_some() {
            return None;
        }
        Some(Self {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant,
        })
    }

    /// A host's platform from its Docker engine's `Architecture` (what `docker info` reports:
    /// the kernel's machine name, `uname -m`), in OCI terms, as containerd normalises it:
    /// `x86_64` is `amd64`, `aarch64` is `arm64`, `armv7l` is `arm/v7`, `i686` is `386`. The
    /// spec's `platform = "host"` is this for the host being provisioned: under `--host` the
    /// other machine, never the one running vlmctl.
    #[must_use]
    pub fn of_engine(architecture: &str) -> Self {
        let (architecture, variant) = match architecture.to_ascii_lowercase().as_str() {
            "x86_64" | "x86-64" | "amd64" => ("amd64".to_owned(), None),
            "aarch64" | "arm64" => ("arm64".to_owned(), None),
            "i386" | "i486" | "i586" | "i686" | "386" => ("386".to_owned(), None),
            "armv7l" | "armv7" | "armhf" | "arm" => ("arm".to_owned(), Some("v7".to_owned())),
            "armv6l" | "armv6" | "armel" => ("arm".to_owned(), Some("v6".to_owned())),
            other => (other.to_owned(), None),
        };
        Self {
            os: "linux".to_owned(),
            architecture,
            variant,
        }
    }

    /// Whether an image built for `self` runs where `wanted` is asked for. A missing variant
    /// matches the architecture's default (`arm64` is `v8`).
    fn satisfies(&self, wanted: &Self) -> bool {
        let norm = |p: &Self| -> Option<String> {
            match (p.architecture.as_str(), p.variant.as_deref()) {
                ("arm64", None | Some("v8")) => None,
                (_, v) => v.map(str::to_owned),
            }
        };
        self.os == wanted.os
            && self.architecture == wanted.architecture
            && (wanted.variant.is_none() || norm(self) == norm(wanted))
    }
}

/// The gate's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformVerdict {
    /// A manifest for the wanted platform exists.
    Supported(Platform),
    /// None does; these are the platforms the image has (attestations left out).
    Unsupported(Vec<Platform>),
    /// The registry listed no runnable platform (dockerd 20.10 reports none for a single OCI
    /// image manifest): cannot tell.
    Unknown,
}

/// Pure decision. Entries `unknown/unknown` are build attestations (provenance, SBOM) that
/// `BuildKit` puts in indexes, not runnable images: ignored.
#[must_use]
pub fn check(wanted: &Platform, found: &[Platform]) -> PlatformVerdict {
    let runnable: Vec<Platform> = found
        .iter()
        .filter(|p| !(p.os == "unknown" && p.architecture == "unknown"))
        .cloned()
        .collect();
    if runnable.is_empty() {
        return PlatformVerdict::Unknown;
    }
    runnable
        .iter()
        .find(|p| p.satisfies(wanted))
        .cloned()
        .map_or(
            PlatformVerdict::Unsupported(runnable),
            PlatformVerdict::Supported,
        )
}

/// Platforms the registry lists for `image`, asked through the daemon (so its registry
/// configuration and credentials apply).
pub async fn image_platforms(
    docker: &Docker,
    image: &str,
) -> Result<Vec<Platform>, LifecycleError> {
    let inspect = docker
        .inspect_registry_image(image, None)
        .await
        .map_err(|source| LifecycleError::RegistryInspect {
            image: image.to_owned(),
            source,
        })?;
    Ok(inspect
        .platforms
        .into_iter()
        .map(|p| Platform {
            os: p.os.unwrap_or_default(),
            architecture: p.architecture.unwrap_or_default(),
            variant: p.variant.filter(|v| !v.is_empty()),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    #[test]
    fn an_amd64_only_image_fails_on_arm64_with_what_was_found() {
        // An image published for linux/amd64 only (plus attestations), as llama.cpp's
        // server-cuda was before it added linux/arm64.
        let found = [p("linux/amd64"), p("unknown/unknown")];
        assert_eq!(
            check(&p("linux/amd64"), &found),
            PlatformVerdict::Supported(p("linux/amd64"))
        );
        assert_eq!(
            check(&p("linux/arm64"), &found),
            PlatformVerdict::Unsupported(vec![p("linux/amd64")])
        );
    }

    #[test]
    fn variants_match_with_arm64_defaulting_to_v8() {
        let found = [p("linux/arm64/v8"), p("linux/arm/v7")];
        assert!(matches!(
            check(&p("linux/arm64"), &found),
            PlatformVerdict::Supported(_)
        ));
        assert!(matches!(
            check(&p("linux/arm64/v8"), &[p("linux/arm64")]),
            PlatformVerdict::Supported(_)
        ));
        assert!(matches!(
            check(&p("linux/arm/v6"), &found),
            PlatformVerdict::Unsupported(_)
        ));
        assert!(matches!(
            check(&p("linux/arm/v7"), &found),
            PlatformVerdict::Supported(_)
        ));
    }

    #[test]
    fn nothing_listed_is_unknown_not_unsupported() {
        assert_eq!(check(&p("linux/amd64"), &[]), PlatformVerdict::Unknown);
        assert_eq!(
            check(&p("linux/amd64"), &[p("unknown/unknown")]),
            PlatformVerdict::Unknown
        );
    }

    #[test]
    fn host_is_the_engines_architecture_in_oci_terms() {
        assert_eq!(Platform::of_engine("x86_64"), p("linux/amd64"));
        assert_eq!(Platform::of_engine("aarch64"), p("linux/arm64"));
        assert_eq!(Platform::of_engine("armv7l"), p("linux/arm/v7"));
        assert_eq!(Platform::of_engine("i686"), p("linux/386"));
        assert_eq!(Platform::of_engine("ppc64le"), p("linux/ppc64le"));
        // An amd64-only image on a GB10 host (its engine says aarch64) fails, whatever machine
        // runs vlmctl.
        let beast = Platform::of_engine("aarch64");
        assert!(matches!(
            check(&beast, &[p("linux/amd64")]),
            PlatformVerdict::Unsupported(_)
        ));
    }

    #[test]
    fn parse_rejects_junk() {
        for bad in ["linux", "/amd64", "linux/", "a/b/c/d", ""] {
            assert!(Platform::parse(bad).is_none(), "{bad}");
        }
    }
}
