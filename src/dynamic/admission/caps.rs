//! Linux capability names as users write them ("NET_ADMIN", "CAP_NET_ADMIN", "net_admin", "ALL")
//! and the set a container ends up holding, as containerd computes it.

use std::collections::BTreeSet;
use std::str::FromStr;

/// containerd's default capabilities for a CRI container (its `defaultUnixCaps`).
pub const RUNTIME_DEFAULT: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum CapName {
    All,
    /// `CAP_*`, upper case.
    Cap(String),
}

impl CapName {
    /// Any case, with or without the `CAP_` prefix; `None` for a name the kernel does not know.
    pub fn parse(name: &str) -> Option<CapName> {
        let upper = name.trim().to_ascii_uppercase();
        if upper == "ALL" {
            return Some(CapName::All);
        }
        let full = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        caps::Capability::from_str(&full).ok()?;
        Some(CapName::Cap(full))
    }

    /// The form sent to containerd: upper case without the prefix, as the kubelet sends it
    /// (containerd adds the prefix).
    pub fn cri_name(&self) -> String {
        match self {
            CapName::All => "ALL".into(),
            CapName::Cap(full) => full.trim_start_matches("CAP_").to_string(),
        }
    }
}

fn every_capability() -> BTreeSet<String> {
    caps::all().into_iter().map(|c| c.to_string()).collect()
}

/// The bounding set containerd gives a container for these add and drop lists: the defaults,
/// then `ALL` (add, then drop), then single names (add, then drop).
pub fn effective(add: &[CapName], drop: &[CapName]) -> BTreeSet<String> {
    let mut set: BTreeSet<String> = RUNTIME_DEFAULT.iter().map(|c| c.to_string()).collect();
    if add.contains(&CapName::All) {
        set = every_capability();
    }
    if drop.contains(&CapName::All) {
        set.clear();
    }
    for c in add {
        if let CapName::Cap(name) = c {
            set.insert(name.clone());
        }
    }
    for c in drop {
        if let CapName::Cap(name) = c {
            set.remove(name);
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_any_spelling_and_all() {
        let admin = CapName::Cap("CAP_SYS_ADMIN".into());
        for n in ["SYS_ADMIN", "CAP_SYS_ADMIN", "sys_admin", "Cap_Sys_Admin"] {
            assert_eq!(CapName::parse(n).as_ref(), Some(&admin), "{n}");
        }
        assert_eq!(CapName::parse("all"), Some(CapName::All));
        assert_eq!(CapName::parse("SYS_WIZARD"), None);
        assert_eq!(admin.cri_name(), "SYS_ADMIN");
    }

    #[test]
    fn the_set_containerd_computes() {
        let p = |names: &[&str]| -> Vec<CapName> {
            names.iter().map(|n| CapName::parse(n).unwrap()).collect()
        };
        assert_eq!(effective(&[], &[]).len(), RUNTIME_DEFAULT.len());
        assert!(effective(&[], &p(&["ALL"])).is_empty());
        assert_eq!(
            effective(&p(&["NET_BIND_SERVICE"]), &p(&["ALL"])),
            ["CAP_NET_BIND_SERVICE".to_string()].into()
        );
        let all_but_chown = effective(&p(&["ALL"]), &p(&["CHOWN"]));
        assert!(all_but_chown.contains("CAP_SYS_ADMIN") && !all_but_chown.contains("CAP_CHOWN"));
        assert!(!effective(&[], &p(&["net_raw"])).contains("CAP_NET_RAW"));
    }
}
