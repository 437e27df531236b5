//! `lab render`: the manifests exactly as `lab up` would apply them. Touches no cluster. Secret values are
//! redacted unless `--show-secrets` asks for an applicable copy.

use super::up::load_manifests;
use crate::manifests::SecretValues;
use crate::settings::ManifestSettings;

pub fn run(manifests: &ManifestSettings, namespace: &str, secrets: SecretValues) -> anyhow::Result<String> {
    Ok(load_manifests(manifests, namespace)?.render_yaml(secrets))
}
