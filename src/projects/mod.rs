//! The project catalogue: social enterprises, found by territory and theme, each stating its
//! social-impact indicators. A project is `draft → published → archived` (or archived straight
//! from draft); only published projects are shown to the platform and auditors.
//!
//! Offers are made for projects: they read them through [`store::get`].

pub mod http;
pub mod payout;
pub mod store;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::fields;
pub use crate::fields::{Country, FieldError};

use crate::money::Amount;

/// The eight themes a project is found by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Theme {
    Employment,
    Environment,
    Culture,
    Waste,
    Health,
    Inclusion,
    Energy,
    Mobility,
}

impl Theme {
    pub const ALL: [Theme; 8] = [
        Theme::Employment,
        Theme::Environment,
        Theme::Culture,
        Theme::Waste,
        Theme::Health,
        Theme::Inclusion,
        Theme::Energy,
        Theme::Mobility,
    ];

    /// The name in JSON and in the database (`projects.themes`).
    pub fn as_str(self) -> &'static str {
        match self {
            Theme::Employment => "employment",
            Theme::Environment => "environment",
            Theme::Culture => "culture",
            Theme::Waste => "waste",
            Theme::Health => "health",
            Theme::Inclusion => "inclusion",
            Theme::Energy => "energy",
            Theme::Mobility => "mobility",
        }
    }
}

impl fmt::Display for Theme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Theme {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        Theme::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| FieldError(format!("'{}' is not a theme", s.chars().take(40).collect::<String>())))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, sqlx::Type, Serialize, Deserialize, ToSchema)]
#[sqlx(type_name = "project_status", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum ProjectStatus {
    /// Being written; seen by operators only.
    Draft,
    /// In the catalogue: offers can be made for it.
    Published,
    /// Out of the catalogue, kept for the record.
    Archived,
}

impl ProjectStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectStatus::Draft => "draft",
            ProjectStatus::Published => "published",
            ProjectStatus::Archived => "archived",
        }
    }
}

/// A move in a project's life, requested by an operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    Publish,
    Archive,
}

impl Lifecycle {
    /// The statuses this move may start from.
    pub(crate) fn starts_from(self) -> &'static [ProjectStatus] {
        match self {
            Lifecycle::Publish => &[ProjectStatus::Draft],
            Lifecycle::Archive => &[ProjectStatus::Draft, ProjectStatus::Published],
        }
    }

    pub fn target(self) -> ProjectStatus {
        match self {
            Lifecycle::Publish => ProjectStatus::Published,
            Lifecycle::Archive => ProjectStatus::Archived,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Lifecycle::Publish => "published",
            Lifecycle::Archive => "archived",
        }
    }

    /// Applies the move in one conditional update, so two concurrent moves cannot both start
    /// from the same status.
    pub async fn apply(self, conn: &mut PgConnection, id: Uuid, now: DateTime<Utc>) -> Result<Project, ProjectError> {
        if let Some(project) = store::transition(conn, id, self.starts_from(), self.target(), now).await? {
            return Ok(project);
        }
        match store::status(conn, id).await? {
            None => Err(ProjectError::NotFound(id)),
            Some(status) => Err(ProjectError::InvalidTransition {
                id,
                status,
                verb: self.verb(),
            }),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("no project {0}")]
    NotFound(Uuid),
    #[error("project {id} is {}; it cannot be {verb}", status.as_str())]
    InvalidTransition {
        id: Uuid,
        status: ProjectStatus,
        verb: &'static str,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A measure of the project's social impact, from where it stands to where it aims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImpactIndicator {
    pub name: String,
    pub unit: String,
    pub baseline: Decimal,
    pub target: Decimal,
}

const MAX_LINE: usize = 200;
const MAX_DESCRIPTION: usize = 20_000;
const MAX_INDICATORS: usize = 20;

/// An impact indicator as a client sends it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IndicatorInput {
    #[schema(example = "jobs for people far from employment")]
    pub name: String,
    #[schema(example = "full-time equivalents")]
    pub unit: String,
    /// A decimal string; JSON numbers are refused.
    pub baseline: Amount,
    /// A decimal string; JSON numbers are refused.
    pub target: Amount,
}

/// `themes` in the document: one to eight, each once (utoipa has no `unique_items` attribute).
fn distinct_themes() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(utoipa::openapi::Ref::from_schema_name("Theme"))
        .description(Some("One to eight distinct themes."))
        .min_items(Some(1))
        .max_items(Some(8))
        .unique_items(true)
        .build()
}

/// A project as a client describes it, before any rule is applied.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectInput {
    #[schema(example = "Crois/Sens")]
    pub name: String,
    #[schema(example = "Crois/Sens SCIC")]
    pub legal_name: String,
    #[schema(example = "SCIC SAS")]
    pub legal_form: String,
    pub country: Country,
    #[schema(example = "Pays de Brest")]
    pub territory: String,
    /// One to eight distinct themes.
    #[schema(schema_with = distinct_themes)]
    pub themes: Vec<Theme>,
    /// At most 20,000 characters.
    pub description: String,
    /// At most 20.
    pub impact_indicators: Vec<IndicatorInput>,
}

/// A project that satisfies every rule, ready to be stored. Serialises canonically, which makes
/// it the request's identity for `Idempotency-Key`.
#[derive(Debug, Serialize)]
pub struct NewProject {
    name: String,
    legal_name: String,
    legal_form: String,
    country: Country,
    territory: String,
    themes: Vec<Theme>,
    description: String,
    impact_indicators: Vec<ImpactIndicator>,
}

impl NewProject {
    pub fn parse(input: ProjectInput) -> Result<NewProject, FieldError> {
        if input.themes.is_empty() {
            return Err(FieldError("themes names at least one theme".into()));
        }
        for (i, theme) in input.themes.iter().enumerate() {
            if input.themes[..i].contains(theme) {
                return Err(FieldError(format!("themes names '{theme}' twice")));
            }
        }
        if input.impact_indicators.len() > MAX_INDICATORS {
            return Err(FieldError(format!(
                "impact_indicators has at most {MAX_INDICATORS} items"
            )));
        }
        let mut impact_indicators: Vec<ImpactIndicator> = Vec::with_capacity(input.impact_indicators.len());
        for (i, raw) in input.impact_indicators.into_iter().enumerate() {
            let indicator = ImpactIndicator {
                name: fields::line(&format!("impact_indicators[{i}].name"), &raw.name, MAX_LINE)?,
                unit: fields::line(&format!("impact_indicators[{i}].unit"), &raw.unit, MAX_LINE)?,
                baseline: raw.baseline.value(),
                target: raw.target.value(),
            };
            // Two indicators with one name could not be told apart in a report.
            if impact_indicators.iter().any(|other| other.name == indicator.name) {
                return Err(FieldError(format!(
                    "impact_indicators names '{}' twice",
                    indicator.name
                )));
            }
            impact_indicators.push(indicator);
        }
        Ok(NewProject {
            name: fields::line("name", &input.name, MAX_LINE)?,
            legal_name: fields::line("legal_name", &input.legal_name, MAX_LINE)?,
            legal_form: fields::line("legal_form", &input.legal_form, MAX_LINE)?,
            country: input.country,
            territory: fields::line("territory", &input.territory, MAX_LINE)?,
            themes: input.themes,
            description: fields::text("description", &input.description, MAX_DESCRIPTION)?,
            impact_indicators,
        })
    }
}

/// A project as stored.
#[derive(Clone, Debug)]
pub struct Project {
    pub id: Uuid,
    pub name: String,
    pub legal_name: String,
    pub legal_form: String,
    pub country: Country,
    pub territory: String,
    /// Never empty, no duplicates, in the order the operator gave.
    pub themes: Vec<Theme>,
    pub description: String,
    pub impact_indicators: Vec<ImpactIndicator>,
    pub status: ProjectStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Where its money is paid out.
    pub payout: payout::PayoutDetails,
}

impl Project {
    /// Whether callers other than operators may see it.
    pub(crate) fn is_public(&self) -> bool {
        self.status == ProjectStatus::Published
    }
}

/// What a listing asks for, besides the page.
#[derive(Clone, Debug, Default)]
pub struct ProjectFilter {
    /// The statuses to include; empty means none.
    pub statuses: Vec<ProjectStatus>,
    pub theme: Option<Theme>,
    /// Matched exactly, ignoring case.
    pub territory: Option<String>,
}

impl ProjectFilter {
    /// The statuses a caller sees, narrowed by the one they asked for: a non-operator asking
    /// for drafts gets an empty list, as they would get a 404 for one draft.
    pub(crate) fn visible(operator: bool, asked: Option<ProjectStatus>) -> Vec<ProjectStatus> {
        let visible: &[ProjectStatus] = if operator {
            &[ProjectStatus::Draft, ProjectStatus::Published, ProjectStatus::Archived]
        } else {
            &[ProjectStatus::Published]
        };
        visible
            .iter()
            .copied()
            .filter(|s| asked.is_none_or(|a| a == *s))
            .collect()
    }

    pub fn territory(value: &str) -> Result<String, FieldError> {
        fields::line("territory", value, MAX_LINE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(themes: Vec<Theme>) -> ProjectInput {
        ProjectInput {
            name: "Crois/Sens".into(),
            legal_name: "Crois/Sens SCIC".into(),
            legal_form: "SCIC".into(),
            country: Country::parse("FR").unwrap(),
            territory: " Pays de Brest ".into(),
            themes,
            description: "".into(),
            impact_indicators: vec![],
        }
    }

    #[test]
    fn themes_are_named_once_and_at_least_once() {
        assert!(NewProject::parse(input(vec![])).is_err());
        assert!(NewProject::parse(input(vec![Theme::Waste, Theme::Energy, Theme::Waste])).is_err());
        let p = NewProject::parse(input(vec![Theme::Waste, Theme::Energy])).unwrap();
        assert_eq!(p.themes, vec![Theme::Waste, Theme::Energy]);
        assert_eq!(p.territory, "Pays de Brest");
    }

    #[test]
    fn theme_names_round_trip() {
        for theme in Theme::ALL {
            assert_eq!(theme.as_str().parse::<Theme>().unwrap(), theme);
            assert_eq!(serde_json::to_value(theme).unwrap(), theme.as_str());
        }
        assert!("Waste".parse::<Theme>().is_err());
    }

    #[test]
    fn only_operators_see_drafts_and_archives() {
        use ProjectStatus::*;
        assert_eq!(ProjectFilter::visible(true, None), vec![Draft, Published, Archived]);
        assert_eq!(ProjectFilter::visible(true, Some(Draft)), vec![Draft]);
        assert_eq!(ProjectFilter::visible(false, None), vec![Published]);
        assert_eq!(ProjectFilter::visible(false, Some(Draft)), vec![]);
        assert_eq!(ProjectFilter::visible(false, Some(Published)), vec![Published]);
    }

    #[test]
    fn moves_start_only_from_their_statuses() {
        assert_eq!(Lifecycle::Publish.starts_from(), &[ProjectStatus::Draft]);
        assert!(Lifecycle::Archive.starts_from().contains(&ProjectStatus::Published));
        assert!(!Lifecycle::Archive.starts_from().contains(&ProjectStatus::Archived));
    }
}
