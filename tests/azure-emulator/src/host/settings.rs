//! App settings as the host sees them. In App Service the host's environment *is* the app settings (plus the
//! platform's own variables), so `%NAME%` and connection lookups read the configured app settings only: never the
//! environment of the process that runs the emulator, which no deployed app could see.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Default)]
pub struct Settings {
    values: BTreeMap<String, String>,
}

impl Settings {
    pub fn new(values: BTreeMap<String, String>) -> Self {
        Self { values }
    }

    /// The app settings given to the host (not the inherited environment).
    pub fn app_settings(&self) -> &BTreeMap<String, String> {
        &self.values
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.values.get(name).cloned()
    }

    /// `%NAME%` in a binding property: every placeholder must resolve, as in the host's `NameResolver`.
    pub fn resolve_binding_expression(&self, text: &str) -> Result<String, String> {
        expand(text, |name| self.get(name).ok_or_else(|| format!("'%{name}%' does not resolve to an app setting")))
    }

    /// `%NAME%` in `customHandler.description`: unset placeholders are dropped, as the host does.
    pub fn expand_dropping_unset(&self, text: &str) -> String {
        expand(text, |name| Ok::<_, String>(self.get(name).unwrap_or_default())).unwrap_or_default()
    }
}

fn expand<E>(text: &str, mut lookup: impl FnMut(&str) -> Result<String, E>) -> Result<String, E> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        let after = &rest[start + 1..];
        match after.find('%') {
            Some(end) if end > 0 && after[..end].chars().all(|c| c.is_ascii_alphanumeric() || "_:.-".contains(c)) => {
                out.push_str(&rest[..start]);
                out.push_str(&lookup(&after[..end])?);
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str(&rest[..=start]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::new([("QUEUE".to_owned(), "onboarding".to_owned())].into())
    }

    #[test]
    fn binding_expressions_must_resolve() {
        assert_eq!(settings().resolve_binding_expression("%QUEUE%").unwrap(), "onboarding");
        assert_eq!(settings().resolve_binding_expression("q-%QUEUE%-x").unwrap(), "q-onboarding-x");
        assert!(settings().resolve_binding_expression("%NOPE_NOT_SET_ANYWHERE%").unwrap_err().contains("NOPE_NOT_SET"));
        assert_eq!(settings().resolve_binding_expression("100% sure").unwrap(), "100% sure");
    }

    #[test]
    fn the_emulators_own_environment_is_not_an_app_setting() {
        // PATH is set in every test process; an app cannot see the environment of whatever runs the emulator.
        assert!(std::env::var("PATH").is_ok());
        assert!(settings().resolve_binding_expression("%PATH%").unwrap_err().contains("PATH"));
        assert_eq!(settings().expand_dropping_unset("[%PATH%]"), "[]");
        assert_eq!(settings().get("PATH"), None);
    }

    #[test]
    fn arguments_drop_unset() {
        assert_eq!(settings().expand_dropping_unset("--q=%QUEUE%%NOPE_NOT_SET_ANYWHERE%"), "--q=onboarding");
    }
}
