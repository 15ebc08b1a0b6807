//! One module per command group.
pub mod bench;
pub mod compose;
pub mod deploy;
pub mod weights;

/// `$VAR/vlmctl` for an XDG base directory variable, else `~/<fallback>/vlmctl` (the XDG
/// default when the variable is unset or empty).
pub(crate) fn xdg_dir(var: &str, fallback: &str) -> std::path::PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map_or_else(
            || vlmctl_weights::expand_home(fallback),
            std::path::PathBuf::from,
        )
        .join("vlmctl")
}
