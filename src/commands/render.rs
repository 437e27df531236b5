//! `lab render`: the manifests exactly as `lab up` would apply them. Touches no cluster.

use super::up::load_manifests;
use crate::settings::ManifestSettings;

pub fn run(manifests: &ManifestSettings, namespace: &str) -> anyhow::Result<String> {
    Ok(load_manifests(manifests, namespace)?.render_yaml())
}
