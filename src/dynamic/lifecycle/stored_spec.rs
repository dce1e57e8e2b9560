//! The spec kept with each dynamic container (annotation [`SPEC_ANNOTATION`]): podgraft reads it
//! back after a restart to report the container and recount its growth.
//!
//! Written as JSON with a format version. Containers made by podgraft builds before it carry the
//! control API's protobuf encoding (base64) instead; this module cannot read that wire type, so the
//! daemon hands in a decoder for it ([`SpecCodec::with_legacy`]) from the control edge.
//!
//! [`SPEC_ANNOTATION`]: crate::dynamic::model::keys::SPEC_ANNOTATION

use serde::{Deserialize, Serialize};

use crate::dynamic::model::ContainerSpec;

const VERSION: u32 = 2;

#[derive(Serialize, Deserialize)]
struct Stored {
    version: u32,
    spec: ContainerSpec,
}

/// Decodes an annotation of an older format.
pub type LegacyDecoder = fn(&str) -> Option<ContainerSpec>;

#[derive(Clone, Copy, Default)]
pub struct SpecCodec {
    legacy: Option<LegacyDecoder>,
}

impl SpecCodec {
    pub fn with_legacy(legacy: LegacyDecoder) -> Self {
        Self {
            legacy: Some(legacy),
        }
    }

    /// The annotation value for `spec`. Registry credentials are never part of it.
    pub fn encode(&self, spec: &ContainerSpec) -> String {
        serde_json::to_string(&Stored {
            version: VERSION,
            spec: spec.clone(),
        })
        .expect("specs serialize")
    }

    pub fn decode(&self, text: &str) -> Option<ContainerSpec> {
        if text.starts_with('{') {
            let stored: Stored = serde_json::from_str(text)
                .inspect_err(|e| tracing::warn!(error = %e, "unreadable stored container spec"))
                .ok()?;
            return (stored.version <= VERSION).then_some(stored.spec);
        }
        self.legacy.and_then(|legacy| legacy(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamic::model::spec::RegistryAuth;

    #[test]
    fn round_trips_without_credentials_and_reads_old_formats_through_the_hook() {
        let spec = ContainerSpec {
            name: "tool".into(),
            image: "busybox".into(),
            registry_auth: Some(RegistryAuth {
                password: "hunter2".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let codec = SpecCodec::default();
        let text = codec.encode(&spec);
        assert!(!text.contains("hunter2"));
        let back = codec.decode(&text).unwrap();
        assert_eq!(back.name, "tool");
        assert_eq!(back.registry_auth, None);
        assert_eq!(codec.decode("CgR0b29s"), None, "no legacy decoder given");
        let legacy = SpecCodec::with_legacy(|t| {
            (t == "CgR0b29s").then(|| ContainerSpec {
                name: "old".into(),
                ..Default::default()
            })
        });
        assert_eq!(legacy.decode("CgR0b29s").unwrap().name, "old");
        assert_eq!(legacy.decode(r#"{"version":9,"spec":{}}"#), None);
    }
}
