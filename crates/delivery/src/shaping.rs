//! Traffic shaping per destination: how many connections, how many
//! messages a minute, how many messages per connection. One set of
//! defaults (`[delivery]`) and overrides chosen by recipient domain or by
//! the suffix of a mail server's name (`[[delivery.shaping]]`).

use std::time::Duration;

/// The shape of one destination's traffic. `0` means no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Connections open at once (busy or idle in the pool).
    pub max_connections: usize,
    /// Messages handed to the destination per minute (a burst of a tenth of
    /// it, at least one, is allowed on top of the steady rate).
    pub messages_per_minute: u64,
    /// Messages sent on one connection before it is closed.
    pub max_messages_per_connection: usize,
}

impl Shape {
    /// A value of 0 ("no limit") as the number to compare with.
    pub fn connection_cap(&self) -> usize {
        if self.max_connections == 0 {
            usize::MAX
        } else {
            self.max_connections
        }
    }

    pub fn messages_per_connection_cap(&self) -> usize {
        if self.max_messages_per_connection == 0 {
            usize::MAX
        } else {
            self.max_messages_per_connection
        }
    }
}

/// One `[[delivery.shaping]]` entry: which destinations it is for, and the
/// values it sets (the unset ones come from the defaults).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShapingRule {
    /// Recipient domains (lower case, exact).
    pub domains: Vec<String>,
    /// Suffixes of mail server names (lower case, like `.google.com`); a
    /// destination matches when any of its hosts ends with one.
    pub mx_suffixes: Vec<String>,
    pub max_connections: Option<usize>,
    pub messages_per_minute: Option<u64>,
    pub max_messages_per_connection: Option<usize>,
}

/// The defaults and the overrides, in the order written (the first rule
/// that matches wins).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shaping {
    pub defaults: Shape,
    pub rules: Vec<ShapingRule>,
    /// A destination whose connections all failed is suspended this long
    /// at first, twice as long after each failed probe, up to
    /// `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Default for Shaping {
    fn default() -> Self {
        Self {
            defaults: Shape {
                max_connections: 20,
                messages_per_minute: 0,
                max_messages_per_connection: 1000,
            },
            rules: Vec::new(),
            backoff_initial: Duration::from_secs(60),
            backoff_max: Duration::from_secs(30 * 60),
        }
    }
}

impl Shaping {
    /// The rule for a recipient `domain` whose mail goes to `hosts` (the
    /// index of the first rule that matches, if any) and the shape it
    /// gives.
    pub fn shape_for(&self, domain: &str, hosts: &[String]) -> (Option<usize>, Shape) {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let found = self.rules.iter().position(|r| {
            r.domains.contains(&domain)
                || r.mx_suffixes.iter().any(|s| {
                    hosts.iter().any(|h| {
                        let h = h.trim_end_matches('.').to_ascii_lowercase();
                        h.ends_with(s.as_str()) || format!(".{h}") == *s
                    })
                })
        });
        let shape = match found {
            None => self.defaults,
            Some(i) => {
                let r = &self.rules[i];
                Shape {
                    max_connections: r.max_connections.unwrap_or(self.defaults.max_connections),
                    messages_per_minute: r
                        .messages_per_minute
                        .unwrap_or(self.defaults.messages_per_minute),
                    max_messages_per_connection: r
                        .max_messages_per_connection
                        .unwrap_or(self.defaults.max_messages_per_connection),
                }
            }
        };
        (found, shape)
    }

    /// How long a destination is suspended after its `n`th failed
    /// connection round in a row (`n` ≥ 1).
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = 1u32 << (n.saturating_sub(1)).min(16);
        self.backoff_initial
            .saturating_mul(factor)
            .min(self.backoff_max)
            .max(self.backoff_initial.min(self.backoff_max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shaping() -> Shaping {
        Shaping {
            rules: vec![
                ShapingRule {
                    domains: vec!["gmail.com".into(), "googlemail.com".into()],
                    max_connections: Some(10),
                    messages_per_minute: Some(600),
                    ..ShapingRule::default()
                },
                ShapingRule {
                    mx_suffixes: vec![".outlook.com".into()],
                    max_messages_per_connection: Some(100),
                    ..ShapingRule::default()
                },
            ],
            ..Shaping::default()
        }
    }

    #[test]
    fn a_domain_rule_sets_its_values_and_keeps_the_other_defaults() {
        let (rule, shape) =
            shaping().shape_for("GMail.com.", &["gmail-smtp-in.l.google.com".into()]);
        assert_eq!(rule, Some(0));
        assert_eq!(shape.max_connections, 10);
        assert_eq!(shape.messages_per_minute, 600);
        assert_eq!(shape.max_messages_per_connection, 1000);
    }

    #[test]
    fn an_mx_suffix_rule_matches_any_host_of_the_destination() {
        let s = shaping();
        let hosts = [
            "a.example".to_string(),
            "x.mail.protection.OUTLOOK.com.".into(),
        ];
        let (rule, shape) = s.shape_for("contoso.com", &hosts);
        assert_eq!(rule, Some(1));
        assert_eq!(shape.max_messages_per_connection, 100);
        assert_eq!(shape.max_connections, 20);
        // A suffix is not a substring: "notoutlook.com" does not match.
        assert_eq!(s.shape_for("x.org", &["mx.notoutlook.com".into()]).0, None);
    }

    #[test]
    fn no_rule_gives_the_defaults_and_zero_means_no_limit() {
        let s = Shaping::default();
        let (rule, shape) = s.shape_for("example.org", &["mx.example.org".into()]);
        assert_eq!(rule, None);
        assert_eq!(shape, s.defaults);
        let open = Shape {
            max_connections: 0,
            messages_per_minute: 0,
            max_messages_per_connection: 0,
        };
        assert_eq!(open.connection_cap(), usize::MAX);
        assert_eq!(open.messages_per_connection_cap(), usize::MAX);
    }

    #[test]
    fn the_backoff_doubles_from_the_first_interval_up_to_the_cap() {
        let s = Shaping::default();
        let mins: Vec<u64> = (1..=7).map(|n| s.backoff(n).as_secs() / 60).collect();
        assert_eq!(mins, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(s.backoff(100).as_secs(), 1800);
    }
}
