//! A spec's `server.host` given as a network interface's name (`eth0`): resolved to that
//! interface's address on this machine, each time a plan is made, so that a LAN address that
//! changes (DHCP) needs no edit of the spec; the container is recreated when it changed (the
//! resolved address is part of the spec's hash). Read with iproute2's `ip -o addr show dev
//! NAME`: its first global IPv4 address, else its first global IPv6 one (never a link-local
//! address, which a client would need the interface's name to reach).
//!
//! Only on the machine vlmctl runs on: under `--host` the name would have to be resolved on the
//! other host, which vlmctl does not do; such a spec is refused there
//! ([`crate::DeploymentPlan::check_interface_on`]) and should name the address.

use std::net::IpAddr;

use crate::client_error::ClientError;

/// The address of interface `name` on this machine.
pub fn address_of(name: &str) -> Result<IpAddr, ClientError> {
    let fail = |why: String| ClientError::InterfaceAddress {
        name: name.to_owned(),
        why,
    };
    let out = std::process::Command::new("ip")
        .args(["-o", "addr", "show", "dev", name])
        .output()
        .map_err(|e| fail(format!("cannot run `ip` (iproute2): {e}")))?;
    if !out.status.success() {
        return Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    pick(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| fail("it has no global IPv4 or IPv6 address".to_owned()))
}

/// The address `ip -o addr show dev NAME` lists first among the global IPv4 ones, else among
/// the global IPv6 ones.
#[must_use]
pub fn pick(listing: &str) -> Option<IpAddr> {
    let global = |family: &str| {
        listing.lines().find_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let at = words.iter().position(|w| *w == family)?;
            let addr: IpAddr = words.get(at + 1)?.split('/').next()?.parse().ok()?;
            let scope = words
                .iter()
                .position(|w| *w == "scope")
                .and_then(|i| words.get(i + 1));
            (scope == Some(&"global")).then_some(addr)
        })
    };
    global("inet").or_else(|| global("inet6"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_global_ipv4_address_wins_then_a_global_ipv6_one() {
        let listing = "2: eth0    inet6 fe80::fc:ff:fe00:1/64 scope link \\       valid_lft forever\n\
                       2: eth0    inet6 fd00::2/64 scope global \\       valid_lft forever\n\
                       2: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever\n\
                       2: eth0    inet 192.0.2.3/24 brd 192.0.2.255 scope global secondary eth0\n";
        assert_eq!(pick(listing), Some("192.0.2.2".parse().unwrap()));
        let v6 =
            "3: wg0    inet6 fe80::1/64 scope link \n3: wg0    inet6 fd00::7/64 scope global \n";
        assert_eq!(pick(v6), Some("fd00::7".parse().unwrap()));
        assert_eq!(pick("4: x    inet6 fe80::1/64 scope link \n"), None);
        assert_eq!(pick(""), None);
    }

    #[test]
    fn a_missing_interface_is_an_error_naming_it() {
        let e = address_of("vlmctl-none0").unwrap_err();
        assert!(e.to_string().contains("vlmctl-none0"), "{e}");
    }
}
