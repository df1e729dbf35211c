//! What an app-scoped token may do inside its application: Svix's
//! `readOnly` flag and `capabilities` list from `AppPortalAccessIn`, and the
//! actions the API tells apart. A token made without either may do
//! everything in its application (Svix's default); `readOnly` refuses every
//! change whatever the list says; a list grants what it names, `ViewBase`
//! always included (Svix requires it; Herald implies it).

use std::collections::BTreeSet;
use std::fmt;

/// Svix's `AppPortalCapability`, by its wire name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// Read everything in the application but endpoint secrets.
    ViewBase,
    /// Read endpoint secrets.
    ViewEndpointSecret,
    /// Read and rotate endpoint secrets.
    ManageEndpointSecret,
    /// Change an endpoint's payload template (Herald's transformation).
    ManageTransformations,
    /// Resend, recover, replay missing messages and send test events.
    CreateAttempts,
    /// Create, change and delete endpoints (secrets, headers and templates included).
    ManageEndpoint,
}

impl Capability {
    pub const ALL: [Capability; 6] = [
        Self::ViewBase,
        Self::ViewEndpointSecret,
        Self::ManageEndpointSecret,
        Self::ManageTransformations,
        Self::CreateAttempts,
        Self::ManageEndpoint,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ViewBase => "ViewBase",
            Self::ViewEndpointSecret => "ViewEndpointSecret",
            Self::ManageEndpointSecret => "ManageEndpointSecret",
            Self::ManageTransformations => "ManageTransformations",
            Self::CreateAttempts => "CreateAttempts",
            Self::ManageEndpoint => "ManageEndpoint",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// Whether holding it lets a read-only token do more than read.
    fn changes_things(self) -> bool {
        !matches!(self, Self::ViewBase | Self::ViewEndpointSecret)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a request does, as the access check sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Reading anything but a secret.
    View,
    ViewSecret,
    RotateSecret,
    /// Creating, replacing, changing or deleting an endpoint or its headers.
    ManageEndpoint,
    /// Changing only an endpoint's payload template.
    ManageTransformation,
    /// Resend, recover, replay-missing, send-example.
    CreateAttempts,
    /// Changes no capability names (sending messages, expunging content,
    /// relay channels): only a token made without restrictions.
    Unrestricted,
}

/// A token's restrictions, as stored beside it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenPermissions {
    pub read_only: bool,
    /// `None`: made without a list, so every capability.
    pub capabilities: Option<BTreeSet<Capability>>,
}

impl TokenPermissions {
    /// No restrictions: what a token made without `readOnly` or `capabilities` gets.
    pub fn full() -> Self {
        Self::default()
    }

    pub fn is_full(&self) -> bool {
        !self.read_only && self.capabilities.is_none()
    }

    fn has(&self, c: Capability) -> bool {
        c == Capability::ViewBase || self.capabilities.as_ref().is_none_or(|set| set.contains(&c))
    }

    pub fn allows(&self, action: Action) -> bool {
        use Capability as C;
        let any = |caps: &[C]| caps.iter().any(|c| self.has(*c));
        match action {
            Action::View => true,
            Action::ViewSecret => any(&[C::ViewEndpointSecret, C::ManageEndpointSecret, C::ManageEndpoint]),
            _ if self.read_only => false,
            Action::RotateSecret => any(&[C::ManageEndpointSecret, C::ManageEndpoint]),
            Action::ManageEndpoint => self.has(C::ManageEndpoint),
            Action::ManageTransformation => any(&[C::ManageTransformations, C::ManageEndpoint]),
            Action::CreateAttempts => self.has(C::CreateAttempts),
            Action::Unrestricted => self.capabilities.is_none(),
        }
    }

    /// The capabilities in force, for a page to show or hide its controls:
    /// under `readOnly` only the ones that read.
    pub fn effective(&self) -> Vec<Capability> {
        Capability::ALL
            .into_iter()
            .filter(|c| self.has(*c) && !(self.read_only && c.changes_things()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(caps: &[Capability]) -> TokenPermissions {
        TokenPermissions {
            read_only: false,
            capabilities: Some(caps.iter().copied().collect()),
        }
    }

    const ACTIONS: [Action; 7] = [
        Action::View,
        Action::ViewSecret,
        Action::RotateSecret,
        Action::ManageEndpoint,
        Action::ManageTransformation,
        Action::CreateAttempts,
        Action::Unrestricted,
    ];

    #[test]
    fn a_token_made_without_restrictions_may_do_everything() {
        let full = TokenPermissions::full();
        assert!(ACTIONS.iter().all(|a| full.allows(*a)));
        assert_eq!(full.effective(), Capability::ALL.to_vec());
    }

    #[test]
    fn read_only_refuses_every_change_whatever_the_list_says() {
        for caps in [None, Some(Capability::ALL.into_iter().collect())] {
            let p = TokenPermissions {
                read_only: true,
                capabilities: caps,
            };
            for a in ACTIONS {
                assert_eq!(
                    p.allows(a),
                    matches!(a, Action::View | Action::ViewSecret),
                    "{a:?} under {p:?}"
                );
            }
            assert_eq!(
                p.effective(),
                vec![Capability::ViewBase, Capability::ViewEndpointSecret]
            );
        }
    }

    #[test]
    fn each_capability_grants_its_actions_and_view_base_is_implied() {
        use Action as A;
        use Capability as C;
        let table: [(C, &[A]); 6] = [
            (C::ViewBase, &[A::View]),
            (C::ViewEndpointSecret, &[A::View, A::ViewSecret]),
            (C::ManageEndpointSecret, &[A::View, A::ViewSecret, A::RotateSecret]),
            (C::ManageTransformations, &[A::View, A::ManageTransformation]),
            (C::CreateAttempts, &[A::View, A::CreateAttempts]),
            (
                C::ManageEndpoint,
                &[
                    A::View,
                    A::ViewSecret,
                    A::RotateSecret,
                    A::ManageEndpoint,
                    A::ManageTransformation,
                ],
            ),
        ];
        for (cap, granted) in table {
            let p = with(&[cap]);
            for a in ACTIONS {
                assert_eq!(p.allows(a), granted.contains(&a), "{a:?} with only {cap}");
            }
        }
        assert_eq!(with(&[]).effective(), vec![C::ViewBase]);
        assert!(
            !with(&Capability::ALL).allows(A::Unrestricted),
            "a list is a restriction"
        );
    }

    #[test]
    fn names_round_trip() {
        for c in Capability::ALL {
            assert_eq!(Capability::parse(c.as_str()), Some(c));
        }
        assert_eq!(Capability::parse("viewbase"), None);
    }
}
