//! Who may call the control API: every call is authorized by the caller's peer credentials
//! (SO_PEERCRED and SO_PEERGROUPS on the Unix socket, taken when the connection is accepted),
//! not only by the socket's file mode, against the `[[access]]` rules of the config.
//!
//! Root (uid 0) may do everything, as it may on the node anyway; nobody else may do anything
//! unless a rule grants it. A rule names identities (uids, gids, group names; for the optional
//! mutual-TLS listener, client certificate names), verbs (`read`: list, get, events; `exec`;
//! `mutate`: add, remove) and optionally namespaces.

use std::collections::BTreeSet;

use super::peer::PeerInfo;
use serde::Deserialize;

/// What a call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    Read,
    Exec,
    Mutate,
}

impl Verb {
    pub fn name(self) -> &'static str {
        match self {
            Verb::Read => "read",
            Verb::Exec => "exec",
            Verb::Mutate => "mutate",
        }
    }
}

/// One `[[access]]` table of the config file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessRule {
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
    /// Group names, resolved when the config is loaded.
    pub groups: Vec<String>,
    /// Client certificate names (subject CN or DNS SAN) on the mutual-TLS listener.
    pub names: Vec<String>,
    pub verbs: Vec<Verb>,
    /// Empty: every namespace.
    pub namespaces: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    uids: BTreeSet<u32>,
    gids: BTreeSet<u32>,
    names: BTreeSet<String>,
    verbs: BTreeSet<Verb>,
    namespaces: BTreeSet<String>,
}

/// The checked rules.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    rules: Vec<Rule>,
}

/// A caller on the Unix socket, as the kernel vouches for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Local {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    /// Supplementary groups of the calling process when it connected.
    pub groups: Vec<u32>,
}

/// A caller on the mutual-TLS listener, as its client certificate (checked against the
/// configured CA) names it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Remote {
    pub names: Vec<String>,
    pub addr: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Caller {
    Local(Local),
    Remote(Remote),
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Local(c) => write!(f, "uid {} (gid {})", c.uid, c.gid),
            Caller::Remote(c) => write!(f, "certificate {:?} from {}", c.names, c.addr),
        }
    }
}

/// Where a caller may act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Nowhere,
    Namespaces(BTreeSet<String>),
    Everywhere,
}

impl Scope {
    pub fn allows(&self, namespace: &str) -> bool {
        match self {
            Scope::Nowhere => false,
            Scope::Namespaces(set) => set.contains(namespace),
            Scope::Everywhere => true,
        }
    }
}

impl Policy {
    /// Checks the rules and resolves group names.
    pub fn from_rules(rules: &[AccessRule]) -> Result<Policy, String> {
        let mut out = Vec::with_capacity(rules.len());
        for (i, r) in rules.iter().enumerate() {
            if r.verbs.is_empty() {
                return Err(format!(
                    "access[{i}].verbs: give at least one of read, exec, mutate"
                ));
            }
            if r.uids.is_empty() && r.gids.is_empty() && r.groups.is_empty() && r.names.is_empty() {
                return Err(format!("access[{i}]: name uids, gids, groups or names"));
            }
            let mut gids: BTreeSet<u32> = r.gids.iter().copied().collect();
            for name in &r.groups {
                let group = nix::unistd::Group::from_name(name)
                    .ok()
                    .flatten()
                    .ok_or_else(|| format!("access[{i}].groups: no group named {name:?}"))?;
                gids.insert(group.gid.as_raw());
            }
            out.push(Rule {
                uids: r.uids.iter().copied().collect(),
                gids,
                names: r.names.iter().cloned().collect(),
                verbs: r.verbs.iter().copied().collect(),
                namespaces: r.namespaces.iter().cloned().collect(),
            });
        }
        Ok(Policy { rules: out })
    }

    /// Where `caller` may do `verb`.
    pub fn scope(&self, caller: &Caller, verb: Verb) -> Scope {
        if matches!(caller, Caller::Local(c) if c.uid == 0) {
            return Scope::Everywhere;
        }
        let mut namespaces = BTreeSet::new();
        for rule in &self.rules {
            let is_caller = match caller {
                Caller::Local(c) => {
                    rule.uids.contains(&c.uid)
                        || rule.gids.contains(&c.gid)
                        || c.groups.iter().any(|g| rule.gids.contains(g))
                }
                Caller::Remote(c) => c.names.iter().any(|n| rule.names.contains(n)),
            };
            if !is_caller || !rule.verbs.contains(&verb) {
                continue;
            }
            if rule.namespaces.is_empty() {
                return Scope::Everywhere;
            }
            namespaces.extend(rule.namespaces.iter().cloned());
        }
        if namespaces.is_empty() {
            Scope::Nowhere
        } else {
            Scope::Namespaces(namespaces)
        }
    }
}

/// The caller of a request: peer credentials on the Unix socket, the client certificate on the
/// mutual-TLS listener; `None` when the transport vouches for nobody (then nothing is allowed).
pub fn caller<T>(req: &tonic::Request<T>) -> Option<Caller> {
    if let Some(info) = req.extensions().get::<Option<PeerInfo>>() {
        let info = info.as_ref()?;
        return Some(Caller::Local(Local {
            uid: info.uid,
            gid: info.gid,
            pid: info.pid,
            groups: info.groups.clone(),
        }));
    }
    let certs = req.peer_certs()?;
    let leaf = certs.first()?;
    let names = certificate_names(leaf.as_ref());
    if names.is_empty() {
        return None;
    }
    Some(Caller::Remote(Remote {
        names,
        addr: req.remote_addr().map(|a| a.to_string()).unwrap_or_default(),
    }))
}

/// The subject CNs and DNS SANs of a DER certificate.
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    use x509_parser::prelude::*;
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(String::from))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push(dns.to_string());
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(uid: u32, gid: u32, groups: &[u32]) -> Caller {
        Caller::Local(Local {
            uid,
            gid,
            pid: None,
            groups: groups.to_vec(),
        })
    }

    #[test]
    fn root_only_by_default_and_rules_grant_verbs_in_namespaces() {
        let none = Policy::default();
        assert_eq!(
            none.scope(&caller(0, 0, &[]), Verb::Mutate),
            Scope::Everywhere
        );
        assert_eq!(
            none.scope(&caller(1000, 1000, &[]), Verb::Read),
            Scope::Nowhere
        );
        let policy = Policy::from_rules(&[
            AccessRule {
                uids: vec![1000],
                verbs: vec![Verb::Read],
                ..Default::default()
            },
            AccessRule {
                gids: vec![2000],
                verbs: vec![Verb::Mutate, Verb::Exec],
                namespaces: vec!["agents".into()],
                ..Default::default()
            },
        ])
        .unwrap();
        assert_eq!(
            policy.scope(&caller(1000, 1000, &[]), Verb::Read),
            Scope::Everywhere
        );
        assert_eq!(
            policy.scope(&caller(1000, 1000, &[]), Verb::Mutate),
            Scope::Nowhere
        );
        let member = caller(1500, 1500, &[2000]);
        let scope = policy.scope(&member, Verb::Mutate);
        assert!(scope.allows("agents") && !scope.allows("default"));
        assert_eq!(policy.scope(&member, Verb::Read), Scope::Nowhere);
        let remote = |names: &[&str]| {
            Caller::Remote(Remote {
                names: names.iter().map(|n| n.to_string()).collect(),
                addr: "127.0.0.1:1".into(),
            })
        };
        let policy = Policy::from_rules(&[AccessRule {
            names: vec!["controller-1".into()],
            verbs: vec![Verb::Mutate],
            ..Default::default()
        }])
        .unwrap();
        assert_eq!(
            policy.scope(&remote(&["controller-1"]), Verb::Mutate),
            Scope::Everywhere
        );
        assert_eq!(
            policy.scope(&remote(&["root"]), Verb::Mutate),
            Scope::Nowhere
        );
    }

    #[test]
    fn certificate_names_are_the_cn_and_dns_sans() {
        let mut params = rcgen::CertificateParams::new(vec!["ctl.example".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "controller-1");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            certificate_names(cert.der()),
            ["controller-1".to_string(), "ctl.example".to_string()]
        );
        assert!(certificate_names(b"not a certificate").is_empty());
    }

    #[test]
    fn rules_are_checked() {
        assert!(
            Policy::from_rules(&[AccessRule {
                uids: vec![1],
                ..Default::default()
            }])
            .unwrap_err()
            .contains("verbs")
        );
        assert!(
            Policy::from_rules(&[AccessRule {
                verbs: vec![Verb::Read],
                ..Default::default()
            }])
            .is_err()
        );
        let err = Policy::from_rules(&[AccessRule {
            groups: vec!["no-such-group-podgraft".into()],
            verbs: vec![Verb::Read],
            ..Default::default()
        }])
        .unwrap_err();
        assert!(err.contains("no-such-group-podgraft"), "{err}");
    }
}
