//! The versions of one connector as an operator sees them: their states, and which version
//! an install, an upgrade or a rollback goes to. Pure rules over the stored records.

use crate::store::{Activation, PublishedVersion};
use serde::Serialize;
use std::cmp::Ordering;

/// Where a version stands for the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionState {
    /// Installed: the version in use.
    Active,
    /// Published, never installed, not skipped.
    Available,
    /// Not to be offered as an upgrade.
    Skipped,
    /// Was active once.
    PreviouslyInstalled,
}

/// One version in the catalog.
#[derive(Debug, Clone, Serialize)]
pub struct VersionView {
    pub name: String,
    pub version: String,
    pub title: String,
    pub release: String,
    pub interface_version: String,
    /// `sha256:<hex>`.
    pub digest: String,
    pub size_bytes: i64,
    pub published_at: crate::store::Timestamp,
    pub state: VersionState,
    /// The newest published version of the connector.
    pub latest: bool,
}

/// A connector in the catalog, with its versions newest first.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorView {
    pub name: String,
    pub title: String,
    pub active_version: Option<String>,
    pub latest_version: String,
    pub upgrade_available: Option<String>,
    pub versions: Vec<VersionView>,
}

/// Why a change of version cannot be made; `code` is the API's error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PlanRefusal {
    pub code: &'static str,
    pub message: String,
}

fn refuse(code: &'static str, message: String) -> PlanRefusal {
    PlanRefusal { code, message }
}

fn semver(v: &str) -> Option<semver::Version> {
    semver::Version::parse(v).ok()
}

/// Semantic-version order; a version that does not parse (none should: publishing checks
/// it) sorts below every one that does, then by text.
pub fn compare(a: &str, b: &str) -> Ordering {
    match (semver(a), semver(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => a.cmp(b),
    }
}

/// Everything known about one connector's versions.
#[derive(Debug, Clone)]
pub struct History {
    /// At least one, any order.
    pub published: Vec<PublishedVersion>,
    pub active: Option<String>,
    /// Most recent first.
    pub activations: Vec<Activation>,
    pub skipped: Vec<String>,
}

impl History {
    fn newest_first(&self) -> Vec<&PublishedVersion> {
        let mut all: Vec<&PublishedVersion> = self.published.iter().collect();
        all.sort_by(|a, b| compare(&b.version, &a.version));
        all
    }

    fn is_skipped(&self, version: &str) -> bool {
        self.skipped.iter().any(|s| s == version)
    }

    fn was_active(&self, version: &str) -> bool {
        self.activations.iter().any(|a| a.version == version)
    }

    pub fn find(&self, version: &str) -> Option<&PublishedVersion> {
        self.published.iter().find(|p| p.version == version)
    }

    fn state(&self, version: &str) -> VersionState {
        if self.active.as_deref() == Some(version) {
            VersionState::Active
        } else if self.is_skipped(version) {
            VersionState::Skipped
        } else if self.was_active(version) {
            VersionState::PreviouslyInstalled
        } else {
            VersionState::Available
        }
    }

    /// The newest version newer than `above` (any, when `None`) that is not skipped: GA
    /// first, and a preview only when no GA qualifies and `previews` allows it.
    fn pick(&self, above: Option<&str>, previews: bool) -> Option<String> {
        let candidates: Vec<&PublishedVersion> = self
            .newest_first()
            .into_iter()
            .filter(|p| !self.is_skipped(&p.version))
            .filter(|p| above.is_none_or(|a| compare(&p.version, a) == Ordering::Greater))
            .collect();
        candidates
            .iter()
            .find(|p| p.release == "ga")
            .or_else(|| candidates.first().filter(|_| previews))
            .map(|p| p.version.clone())
    }

    /// The version an upgrade goes to by default. Previews are offered only to a connector
    /// that runs a preview already.
    pub fn upgrade_available(&self) -> Option<String> {
        let active = self.active.as_deref()?;
        let on_preview = self.find(active).is_some_and(|p| p.release == "preview");
        self.pick(Some(active), on_preview)
    }

    pub fn view(&self) -> ConnectorView {
        let ordered = self.newest_first();
        let latest = ordered
            .first()
            .map(|p| p.version.clone())
            .unwrap_or_default();
        let title = self
            .active
            .as_deref()
            .and_then(|a| self.find(a))
            .or(ordered.first().copied())
            .map(|p| p.title.clone())
            .unwrap_or_default();
        ConnectorView {
            name: ordered.first().map(|p| p.name.clone()).unwrap_or_default(),
            title,
            active_version: self.active.clone(),
            upgrade_available: self.upgrade_available(),
            versions: ordered
                .iter()
                .map(|p| VersionView {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    title: p.title.clone(),
                    release: p.release.clone(),
                    interface_version: p.interface_version.clone(),
                    digest: format!("sha256:{}", p.digest),
                    size_bytes: p.size_bytes,
                    published_at: p.published_at,
                    state: self.state(&p.version),
                    latest: p.version == latest,
                })
                .collect(),
            latest_version: latest,
        }
    }

    fn require(&self, version: &str) -> Result<(), PlanRefusal> {
        self.find(version).map(|_| ()).ok_or_else(|| {
            let name = self.published.first().map_or("", |p| p.name.as_str());
            refuse(
                "not_found",
                format!("{name} {version} is not published; see `junction connector show {name}`"),
            )
        })
    }

    fn name(&self) -> &str {
        self.published.first().map_or("", |p| p.name.as_str())
    }

    /// The version a first install goes to.
    pub fn plan_install(&self, requested: Option<&str>) -> Result<String, PlanRefusal> {
        let name = self.name();
        if let Some(active) = &self.active {
            return Err(refuse(
                "already_installed",
                format!(
                    "{name} is installed (version {active}); use `upgrade` or `rollback` to change its version"
                ),
            ));
        }
        match requested {
            Some(v) => {
                self.require(v)?;
                Ok(v.to_owned())
            }
            None => self.pick(None, true).ok_or_else(|| {
                refuse(
                    "no_installable_version",
                    format!("every published version of {name} is skipped; name one to install"),
                )
            }),
        }
    }

    /// The version an upgrade goes to.
    pub fn plan_upgrade(&self, requested: Option<&str>) -> Result<String, PlanRefusal> {
        let name = self.name();
        let Some(active) = self.active.as_deref() else {
            return Err(refuse(
                "not_installed",
                format!("{name} is not installed; install it first"),
            ));
        };
        let Some(target) = requested else {
            return self.upgrade_available().ok_or_else(|| {
                refuse(
                    "no_upgrade",
                    format!(
                        "{name} {active} is up to date: no newer version that is neither skipped nor a preview (name a version to upgrade to a preview)"
                    ),
                )
            });
        };
        self.require(target)?;
        if compare(target, active) != Ordering::Greater {
            return Err(refuse(
                "not_newer",
                format!(
                    "{name} {target} is not newer than the active version {active}; use `rollback` to go back to a previously installed version"
                ),
            ));
        }
        if self.is_skipped(target) {
            return Err(refuse(
                "version_skipped",
                format!("{name} {target} is skipped; unskip it first to upgrade to it"),
            ));
        }
        Ok(target.to_owned())
    }

    /// The version a rollback goes to: a previously installed one (by default the one
    /// active before the current one).
    pub fn plan_rollback(&self, requested: Option<&str>) -> Result<String, PlanRefusal> {
        let name = self.name();
        let Some(active) = self.active.as_deref() else {
            return Err(refuse("not_installed", format!("{name} is not installed")));
        };
        match requested {
            Some(target) => {
                self.require(target)?;
                if target == active {
                    return Err(refuse(
                        "version_active",
                        format!("{name} {target} is the active version already"),
                    ));
                }
                if !self.was_active(target) {
                    return Err(refuse(
                        "not_previously_installed",
                        format!(
                            "{name} {target} was never installed, so it cannot be rolled back to; use `upgrade` (or `install` on a fresh service)"
                        ),
                    ));
                }
                Ok(target.to_owned())
            }
            None => self
                .activations
                .iter()
                .find(|a| a.version != active)
                .map(|a| a.version.clone())
                .ok_or_else(|| {
                    refuse(
                        "no_rollback",
                        format!("{name} has no previously installed version to roll back to"),
                    )
                }),
        }
    }

    /// Whether `version` may be skipped.
    pub fn check_skip(&self, version: &str) -> Result<(), PlanRefusal> {
        self.require(version)?;
        if self.active.as_deref() == Some(version) {
            return Err(refuse(
                "version_active",
                format!(
                    "{} {version} is the active version; switch to another before skipping it",
                    self.name()
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Timestamp;

    fn published(version: &str, release: &str) -> PublishedVersion {
        PublishedVersion {
            name: "versioned".into(),
            version: version.into(),
            title: "Versioned".into(),
            release: release.into(),
            interface_version: "0.1.0".into(),
            digest: "ab".repeat(32),
            size_bytes: 10,
            published_at: Timestamp(0),
            published_by: "startup".into(),
        }
    }

    fn history(active: Option<&str>, activated: &[&str], skipped: &[&str]) -> History {
        History {
            published: vec![
                published("1.0.0", "ga"),
                published("3.0.0-beta.1", "preview"),
                published("1.10.0", "ga"),
                published("2.0.0", "ga"),
            ],
            active: active.map(str::to_owned),
            activations: activated
                .iter()
                .enumerate()
                .map(|(i, v)| Activation {
                    version: (*v).into(),
                    activated_at: Timestamp(100 - i as i64),
                })
                .collect(),
            skipped: skipped.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn versions_are_listed_newest_first_by_semantic_version_with_their_states() {
        let h = history(Some("1.10.0"), &["1.10.0", "1.0.0"], &["2.0.0"]);
        let view = h.view();
        let listed: Vec<(&str, VersionState, bool)> = view
            .versions
            .iter()
            .map(|v| (v.version.as_str(), v.state, v.latest))
            .collect();
        assert_eq!(
            listed,
            [
                ("3.0.0-beta.1", VersionState::Available, true),
                ("2.0.0", VersionState::Skipped, false),
                ("1.10.0", VersionState::Active, false),
                ("1.0.0", VersionState::PreviouslyInstalled, false),
            ]
        );
        assert_eq!(view.latest_version, "3.0.0-beta.1");
        // 2.0.0 is skipped and previews are not offered to a GA install.
        assert_eq!(view.upgrade_available, None);
        assert!(view.versions[0].digest.starts_with("sha256:"));
    }

    #[test]
    fn install_goes_to_the_newest_ga_version_that_is_not_skipped() {
        assert_eq!(history(None, &[], &[]).plan_install(None).unwrap(), "2.0.0");
        assert_eq!(
            history(None, &[], &["2.0.0"]).plan_install(None).unwrap(),
            "1.10.0"
        );
        assert_eq!(
            history(None, &[], &[])
                .plan_install(Some("3.0.0-beta.1"))
                .unwrap(),
            "3.0.0-beta.1"
        );
        let e = history(Some("1.0.0"), &["1.0.0"], &[])
            .plan_install(None)
            .unwrap_err();
        assert_eq!(e.code, "already_installed");
        let e = history(None, &[], &[])
            .plan_install(Some("9.9.9"))
            .unwrap_err();
        assert_eq!(e.code, "not_found");
    }

    #[test]
    fn upgrades_pass_over_skipped_versions_and_refuse_going_down() {
        let h = history(Some("1.0.0"), &["1.0.0"], &[]);
        assert_eq!(h.plan_upgrade(None).unwrap(), "2.0.0");
        let h = history(Some("1.0.0"), &["1.0.0"], &["2.0.0"]);
        assert_eq!(h.plan_upgrade(None).unwrap(), "1.10.0");
        assert_eq!(
            h.plan_upgrade(Some("2.0.0")).unwrap_err().code,
            "version_skipped"
        );
        let h = history(Some("2.0.0"), &["2.0.0"], &[]);
        assert_eq!(h.plan_upgrade(None).unwrap_err().code, "no_upgrade");
        assert_eq!(h.plan_upgrade(Some("1.0.0")).unwrap_err().code, "not_newer");
        assert_eq!(
            h.plan_upgrade(Some("3.0.0-beta.1")).unwrap(),
            "3.0.0-beta.1"
        );
        assert_eq!(
            history(None, &[], &[]).plan_upgrade(None).unwrap_err().code,
            "not_installed"
        );
    }

    #[test]
    fn rollback_goes_to_a_previously_installed_version_only() {
        let h = history(Some("2.0.0"), &["2.0.0", "1.10.0", "1.0.0"], &[]);
        assert_eq!(h.plan_rollback(None).unwrap(), "1.10.0");
        assert_eq!(h.plan_rollback(Some("1.0.0")).unwrap(), "1.0.0");
        assert_eq!(
            h.plan_rollback(Some("3.0.0-beta.1")).unwrap_err().code,
            "not_previously_installed"
        );
        assert_eq!(
            h.plan_rollback(Some("2.0.0")).unwrap_err().code,
            "version_active"
        );
        let h = history(Some("2.0.0"), &["2.0.0"], &[]);
        assert_eq!(h.plan_rollback(None).unwrap_err().code, "no_rollback");
    }

    #[test]
    fn the_active_version_cannot_be_skipped() {
        let h = history(Some("2.0.0"), &["2.0.0"], &[]);
        assert_eq!(h.check_skip("2.0.0").unwrap_err().code, "version_active");
        assert!(h.check_skip("1.0.0").is_ok());
    }

    #[test]
    fn a_preview_install_is_offered_newer_previews() {
        let h = history(Some("3.0.0-beta.1"), &["3.0.0-beta.1"], &[]);
        assert_eq!(h.upgrade_available(), None);
        let mut h = h;
        h.published.push(published("3.0.0-beta.2", "preview"));
        assert_eq!(h.upgrade_available().as_deref(), Some("3.0.0-beta.2"));
    }
}
