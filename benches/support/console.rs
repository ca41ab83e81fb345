//! A console user for the benches, as a browser is one: the login form's double-submit
//! token, then the session cookie on every request.

use anyhow::{Context, Result};

/// Logs `login` in at `base`; returns the session cookie's value.
pub async fn log_in(
    client: &reqwest::Client,
    base: &str,
    login: &str,
    password: &str,
) -> Result<String> {
    let form = client.get(format!("{base}/login")).send().await?;
    let login_cookie = cookie(&form, "hotline_login")?;
    let html = form.text().await?;
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .context("no csrf in the login form")?
        .to_string();
    let done = client
        .post(format!("{base}/login"))
        .header("Cookie", format!("hotline_login={login_cookie}"))
        .form(&[("login", login), ("password", password), ("csrf", &csrf)])
        .send()
        .await?;
    cookie(&done, "hotline_session")
}

/// A cookie's value from a response's `Set-Cookie`.
pub fn cookie(resp: &reqwest::Response, name: &str) -> Result<String> {
    resp.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
        .with_context(|| format!("no {name} cookie"))
}
