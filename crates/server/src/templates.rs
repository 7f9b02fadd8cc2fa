//! HTML templates (minijinja, embedded in the binary) and static assets.
//!
//! Templates are compiled in with `include_str!`; when `templates.path` is
//! set, a file of the same name there replaces the embedded one. Every URL
//! in a page comes from [`UrlBuilder`] (`url('/login')`, `asset('style.css')`),
//! so pages work under a path prefix and behind `http.public_base`. Pages
//! need no JavaScript and load nothing from other origins.

use std::{path::PathBuf, sync::LazyLock};

use minijinja::{Environment, Value};
use sha2::{Digest, Sha256};

use crate::routes::UrlBuilder;

/// Every template, embedded: `(name, source)`.
pub const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("register.html", include_str!("../templates/register.html")),
    ("consent.html", include_str!("../templates/consent.html")),
    (
        "compat_consent.html",
        include_str!("../templates/compat_consent.html"),
    ),
    ("logout.html", include_str!("../templates/logout.html")),
    ("link.html", include_str!("../templates/link.html")),
    (
        "device_consent.html",
        include_str!("../templates/device_consent.html"),
    ),
    (
        "device_done.html",
        include_str!("../templates/device_done.html"),
    ),
    ("index.html", include_str!("../templates/index.html")),
    ("account.html", include_str!("../templates/account.html")),
    (
        "account_session.html",
        include_str!("../templates/account_session.html"),
    ),
    (
        "account_cross_signing.html",
        include_str!("../templates/account_cross_signing.html"),
    ),
    ("error.html", include_str!("../templates/error.html")),
    (
        "upstream_register.html",
        include_str!("../templates/upstream_register.html"),
    ),
    (
        "upstream_link.html",
        include_str!("../templates/upstream_link.html"),
    ),
    (
        "upstream_mismatch.html",
        include_str!("../templates/upstream_mismatch.html"),
    ),
    (
        "form_post.html",
        include_str!("../templates/form_post.html"),
    ),
];

/// A static asset, served at `/assets/<stem>.<hash>.<ext>`.
#[derive(Debug)]
pub struct Asset {
    /// The name templates use (`style.css`).
    pub name: &'static str,
    /// The content-hashed file name (`style.0123abcd4567ef89.css`).
    pub file: String,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

const RAW_ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/style.css"),
    ),
    (
        "form_post.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/form_post.js"),
    ),
    (
        "brand-apple.svg",
        "image/svg+xml",
        include_bytes!("../assets/brands/apple.svg"),
    ),
    (
        "brand-discord.svg",
        "image/svg+xml",
        include_bytes!("../assets/brands/discord.svg"),
    ),
    (
        "brand-facebook.svg",
        "image/svg+xml",
        include_bytes!("../assets/brands/facebook.svg"),
    ),
    (
        "brand-github.svg",
        "image/svg+xml",
        include_bytes!("../assets/brands/github.svg"),
    ),
    (
        "brand-gitlab.svg",
        "image/svg+xml",
        include_bytes!("../assets/brands/gitlab.svg"),
    ),
    (
        "brand-google.svg",
        "image/svg+xml",
        include_bytes!("../assets/brands/google.svg"),
    ),
    (
        "brand-microsoft.svg",
        "image/svg+xml",
        include_bytes!("../assets/brands/microsoft.svg"),
    ),
    (
        "brand-twitter.svg",
        "image/svg+xml",
        include_bytes!("../assets/brands/twitter.svg"),
    ),
    (
        "brand-neutral.svg",
        "image/svg+xml",
        include_bytes!("../assets/brands/neutral.svg"),
    ),
];

/// Brands with an icon (`brand-<name>.svg`); other `brand_name` values
/// get `brand-neutral.svg`. The icons are simple letter marks drawn for
/// Vestibule (no third-party artwork, nothing loaded from elsewhere).
pub const BRANDS: &[&str] = &[
    "apple",
    "discord",
    "facebook",
    "github",
    "gitlab",
    "google",
    "microsoft",
    "twitter",
];

/// The icon asset of a provider's `brand_name`.
pub fn brand_icon(brand_name: Option<&str>) -> String {
    let brand = brand_name.map(str::to_ascii_lowercase);
    match brand.as_deref() {
        Some(b) if BRANDS.contains(&b) => format!("brand-{b}.svg"),
        Some("x") => "brand-twitter.svg".to_owned(),
        _ => "brand-neutral.svg".to_owned(),
    }
}

/// The embedded assets with their content hashes (computed once).
pub static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    RAW_ASSETS
        .iter()
        .map(|&(name, content_type, body)| {
            let hash = hex::encode(&Sha256::digest(body)[..8]);
            let file = match name.rsplit_once('.') {
                Some((stem, ext)) => format!("{stem}.{hash}.{ext}"),
                None => format!("{name}.{hash}"),
            };
            Asset {
                name,
                file,
                content_type,
                body,
            }
        })
        .collect()
});

/// The asset served under this content-hashed file name.
pub fn asset_by_file(file: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.file == file)
}

#[derive(Debug, thiserror::Error)]
#[error("rendering template {name}: {source}")]
pub struct RenderError {
    name: String,
    #[source]
    source: minijinja::Error,
}

/// HTML auto-escaping of `& < > " '` (OWASP's set). minijinja's default
/// also escapes `/`, which makes every URL in a page unreadable without
/// adding safety. Undefined and none values print nothing.
fn html_formatter(
    out: &mut minijinja::Output<'_>,
    state: &minijinja::State<'_, '_>,
    value: &Value,
) -> Result<(), minijinja::Error> {
    if value.is_undefined() || value.is_none() {
        return Ok(());
    }
    if value.is_safe() || matches!(state.auto_escape(), minijinja::AutoEscape::None) {
        return minijinja::escape_formatter(out, state, value);
    }
    let s = value.to_string();
    let mut escaped = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#x27;"),
            c => escaped.push(c),
        }
    }
    out.write_str(&escaped)
        .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string()))
}

/// The template environment. Cheap to clone behind an `Arc`.
pub struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").finish_non_exhaustive()
    }
}

impl Templates {
    /// Builds the environment: embedded templates, overridden by files in
    /// `override_dir`, with the `url` and `asset` helpers bound to `urls`.
    pub fn new(urls: &UrlBuilder, override_dir: Option<PathBuf>) -> Self {
        let mut env = Environment::new();
        env.set_loader(move |name| {
            if let Some(dir) = &override_dir {
                // Only plain file names: no path traversal out of the dir.
                if !name.contains(['/', '\\']) && !name.starts_with('.') {
                    match std::fs::read_to_string(dir.join(name)) {
                        Ok(s) => return Ok(Some(s)),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(minijinja::Error::new(
                                minijinja::ErrorKind::TemplateNotFound,
                                format!("reading the override of {name}: {e}"),
                            ));
                        }
                    }
                }
            }
            Ok(TEMPLATES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, s)| (*s).to_owned()))
        });
        env.set_formatter(html_formatter);
        let url_base = urls.clone();
        env.add_function("url", move |path: &str| -> String {
            url_base.join(path).to_string()
        });
        let asset_base = urls.clone();
        env.add_function(
            "asset",
            move |name: &str| -> Result<String, minijinja::Error> {
                ASSETS
                    .iter()
                    .find(|a| a.name == name)
                    .map(|a| asset_base.join(&format!("assets/{}", a.file)).to_string())
                    .ok_or_else(|| {
                        minijinja::Error::new(
                            minijinja::ErrorKind::InvalidOperation,
                            format!("unknown asset {name}"),
                        )
                    })
            },
        );
        Self { env }
    }

    /// Renders template `name` with `ctx`.
    pub fn render(&self, name: &str, ctx: Value) -> Result<String, RenderError> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|source| RenderError {
                name: name.to_owned(),
                source,
            })
    }
}
