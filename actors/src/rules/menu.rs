//! The keypad menu offered after the greeting: a key's action, or the
//! default when no key comes in time. Speaking closes it unused.

use crate::policy::{MenuChoice, MenuSettings};

#[derive(Debug)]
pub struct Menu {
    settings: MenuSettings,
    open: bool,
}

impl Menu {
    pub fn new(settings: &MenuSettings) -> Self {
        Self {
            settings: settings.clone(),
            open: false,
        }
    }

    /// The prompt in the language the call switched to.
    pub fn set_prompt(&mut self, prompt: &str) {
        prompt.clone_into(&mut self.settings.prompt);
    }

    /// The prompt, if the policy has a menu; it is open from now on.
    pub fn offer(&mut self) -> Option<&str> {
        self.open = self.settings.is_on();
        self.open.then_some(self.settings.prompt.as_str())
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.settings.timeout_secs))
    }

    /// A key while open: its choice (a key the menu lacks is ignored and
    /// the menu stays open).
    pub fn on_dtmf(&mut self, key: char) -> Option<MenuChoice> {
        if !self.open {
            return None;
        }
        let choice = self.settings.choice(key).cloned()?;
        self.open = false;
        Some(choice)
    }

    /// No key in time: the default's choice, if any; the menu closes.
    pub fn on_timeout(&mut self) -> Option<MenuChoice> {
        if !std::mem::take(&mut self.open) {
            return None;
        }
        self.settings
            .default
            .chars()
            .next()
            .and_then(|k| self.settings.choice(k).cloned())
    }

    /// The caller spoke instead: the conversation takes it from here.
    pub fn close(&mut self) {
        self.open = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn menu() -> Menu {
        let mut s = MenuSettings {
            prompt: "Press 1 for sales.".into(),
            default: "1".into(),
            ..MenuSettings::default()
        };
        s.keys.insert(
            "1".into(),
            MenuChoice::Transfer {
                target: "sales".into(),
            },
        );
        Menu::new(&s)
    }

    #[test]
    fn a_key_a_default_or_words_close_it() {
        let mut m = menu();
        assert_eq!(m.on_dtmf('1'), None, "not offered yet");
        assert!(m.offer().is_some());
        assert_eq!(m.on_dtmf('7'), None);
        assert!(m.is_open());
        assert!(matches!(m.on_dtmf('1'), Some(MenuChoice::Transfer { .. })));
        assert!(!m.is_open());
        m.offer();
        assert!(matches!(m.on_timeout(), Some(MenuChoice::Transfer { .. })));
        assert_eq!(m.on_timeout(), None);
        m.offer();
        m.close();
        assert_eq!(m.on_dtmf('1'), None);
    }
}
