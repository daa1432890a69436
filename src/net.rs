//! A leaf for what every box that talks to the outside shares: the one HTTP client, and how text
//! read from outside (a program's output, an HTTP answer) is made fit for the ledger.

/// The HTTP client every job, channel and alert shares (rustls, connection pool), built at its first use so a
/// daemon without HTTP jobs never loads TLS roots.
pub fn http_client() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .user_agent(concat!("tickler/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(std::time::Duration::from_secs(10))
                .build()
                .unwrap_or_default()
        })
        .clone()
}

/// Why a configured URL does not parse (`url::ParseError`, which reqwest does not re-export):
/// the channels and jobs that take a URL keep it in their errors.
pub type UrlError = <reqwest::Url as std::str::FromStr>::Err;

/// Text a job read from outside (a program's output, an HTTP answer) without NUL bytes, which
/// PostgreSQL refuses in text and jsonb: such text ends up in the ledger and task results.
pub fn without_nul(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "")
    } else {
        text
    }
}

/// Keeps the last `max` bytes of `text`, on a character boundary, for metadata tails.
pub fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_bytes_are_dropped_from_outside_text() {
        assert_eq!(without_nul("disk\0full\n".into()), "diskfull\n");
        assert_eq!(without_nul("plain".into()), "plain");
    }

    #[test]
    fn tails_keep_the_end() {
        assert_eq!(tail("abcdef", 3), "…def");
        assert_eq!(tail("ab", 3), "ab");
        assert_eq!(tail("aé", 1), "…");
    }
}
