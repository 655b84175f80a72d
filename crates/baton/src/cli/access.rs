//! `baton login|logout|whoami`, `baton tokens …` and `baton users …`.

use std::{io::BufRead, path::PathBuf};

use baton_client::Client;
use baton_proto::api::access::{ApiToken, PageQuery, TokenCreate, User, UserCreate};
use serde::Serialize;

use super::{
    Global,
    output::{self, Format, Tabular, ago, or_dash},
    profile::Profile,
};

#[derive(clap::Args)]
pub struct LoginArgs {
    /// The server's URL, e.g. https://baton.example.com
    #[arg(long)]
    server: Option<String>,
    /// Tenant to sign in to.
    #[arg(long, default_value = "default")]
    tenant: String,
    #[arg(long, short = 'u', default_value = "admin")]
    username: String,
    /// Read the password from the first line of standard input (else BATON_PASSWORD, else a prompt).
    #[arg(long)]
    password_stdin: bool,
    /// Save this API token instead of signing in with a password.
    #[arg(long = "api-token")]
    api_token: Option<String>,
    /// PEM file of the CA that signed the server's certificate, when it is private.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
}

pub async fn login(args: LoginArgs, g: &Global) -> anyhow::Result<()> {
    let saved = Profile::load()?;
    let server = args.server.or(g.server.clone()).or(saved.server).ok_or_else(|| {
        anyhow::anyhow!("which server? pass --server URL, e.g. `baton login --server http://localhost:8080`")
    })?;
    let profile = Profile { server: Some(server.clone()), token: None, ca_cert: args.ca_cert.clone() };
    let ca = profile.ca_pem()?;
    let client = Client::new(&server, None, ca.as_deref())?;
    let token = match args.api_token {
        Some(token) => token,
        None => {
            let password = read_password(args.password_stdin, &args.username)?;
            client.login(Some(&args.tenant), &args.username, &password).await?.token
        }
    };
    let me = client.with_token(token.clone()).me().await?;
    let path = Profile { token: Some(token), ..profile }.save()?;
    println!(
        "Signed in to {server} as {} (tenant {}, role {}); saved in {}",
        me.subject,
        me.tenant_name,
        me.role,
        path.display()
    );
    Ok(())
}

fn read_password(from_stdin: bool, username: &str) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let password = line.trim_end_matches(['\r', '\n']).to_owned();
        anyhow::ensure!(!password.is_empty(), "--password-stdin: standard input held no password");
        return Ok(password);
    }
    if let Ok(p) = std::env::var("BATON_PASSWORD") {
        return Ok(p);
    }
    rpassword::prompt_password(format!("Password for {username}: "))
        .map_err(|e| anyhow::anyhow!("cannot read a password ({e}); use --password-stdin or BATON_PASSWORD"))
}

pub async fn logout() -> anyhow::Result<()> {
    let saved = Profile::load()?;
    if let (Some(server), Some(token)) = (saved.server.clone(), saved.token.clone())
        && token.starts_with("bs_")
    {
        // Ending the session on the server is best effort: the local token is forgotten anyway.
        if let Ok(client) = Client::new(&server, Some(token), saved.ca_pem()?.as_deref()) {
            let _ = client.logout().await;
        }
    }
    let path = Profile { token: None, ..saved }.save()?;
    println!("Signed out; {} no longer holds a token", path.display());
    Ok(())
}

pub async fn whoami(client: &Client, g: &Global) -> anyhow::Result<()> {
    let me = client.me().await?;
    match g.output {
        Format::Table => {
            println!("{} in tenant {} ({}), role {}", me.subject, me.tenant_name, me.tenant_id, me.role);
            println!("permissions: {}", me.permissions.join(", "));
            Ok(())
        }
        f => output::structured(f, &me),
    }
}

#[derive(clap::Subcommand)]
pub enum TokensCommand {
    /// List API tokens.
    List(PageArgs),
    /// Create an API token; its secret is printed once.
    Create {
        name: String,
        /// admin, operator or viewer (at most your own role).
        #[arg(long)]
        role: Option<String>,
        /// Days until it expires (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
        /// Narrow the token to this permission of its role (repeat for more; `GET /api/v1/roles` lists them):
        /// e.g. `--permission devices:read --permission remote:screen-view` for a helpdesk tool.
        #[arg(long = "permission", value_name = "PERMISSION")]
        permissions: Vec<String>,
    },
    /// Revoke an API token by id.
    Revoke { id: String },
}

#[derive(clap::Args)]
pub struct PageArgs {
    /// Rows per page.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

pub async fn tokens(cmd: TokensCommand, client: &Client, g: &Global) -> anyhow::Result<()> {
    match cmd {
        TokensCommand::List(p) => {
            let page = client.tokens(&PageQuery { limit: Some(p.limit), cursor: None }).await?;
            output::more_rows(&page.next_cursor);
            output::list(g.output, &page.items)
        }
        TokensCommand::Create { name, role, expires_in_days, permissions } => {
            let permissions = (!permissions.is_empty()).then_some(permissions);
            let created = client.create_token(&TokenCreate { name, role, expires_in_days, permissions }).await?;
            match g.output {
                Format::Table => {
                    eprintln!(
                        "Created token {} ({}); store the secret now, it is not shown again:",
                        created.token.name, created.token.id
                    );
                    println!("{}", created.secret);
                    Ok(())
                }
                f => output::structured(f, &created),
            }
        }
        TokensCommand::Revoke { id } => output::one(g.output, &client.revoke_token(&id).await?),
    }
}

impl Tabular for ApiToken {
    fn headers() -> &'static [&'static str] {
        &["ID", "NAME", "ROLE", "CREATED BY", "LAST USED", "EXPIRES", "REVOKED"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.name.clone(),
            self.role.clone(),
            or_dash(&self.created_by),
            ago(self.last_used_at),
            ago(self.expires_at),
            ago(self.revoked_at),
        ]
    }
}

#[derive(clap::Subcommand)]
pub enum UsersCommand {
    /// List users.
    List(PageArgs),
    /// Create a user; the password is read like `baton login` reads it.
    Create {
        username: String,
        /// admin, operator or viewer.
        #[arg(long, default_value = "viewer")]
        role: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete a user by id.
    Delete { id: String },
}

pub async fn users(cmd: UsersCommand, client: &Client, g: &Global) -> anyhow::Result<()> {
    match cmd {
        UsersCommand::List(p) => {
            let page = client.users(&PageQuery { limit: Some(p.limit), cursor: None }).await?;
            output::more_rows(&page.next_cursor);
            output::list(g.output, &page.items)
        }
        UsersCommand::Create { username, role, password_stdin } => {
            let password = read_password(password_stdin, &username)?;
            let user = client.create_user(&UserCreate { username, password, role: Some(role) }).await?;
            output::one(g.output, &user)
        }
        UsersCommand::Delete { id } => {
            client.delete_user(&id).await?;
            done(g.output, &format!("deleted user {id}"))
        }
    }
}

impl Tabular for User {
    fn headers() -> &'static [&'static str] {
        &["ID", "USERNAME", "ROLE", "PLATFORM ADMIN", "CREATED"]
    }
    fn row(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.username.clone(),
            self.role.clone(),
            self.platform_admin.to_string(),
            ago(Some(self.created_at)),
        ]
    }
}

/// Reports a change that returns nothing.
pub fn done(format: Format, message: &str) -> anyhow::Result<()> {
    #[derive(Serialize)]
    struct Done<'a> {
        ok: bool,
        message: &'a str,
    }
    match format {
        Format::Table => {
            println!("{message}");
            Ok(())
        }
        f => output::structured(f, &Done { ok: true, message }),
    }
}
