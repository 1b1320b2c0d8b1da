//! Certificates from an ACME server (RFC 8555: Let's Encrypt, or Pebble in tests) with
//! HTTP-01 answered by the stack's own HTTP port: the account key is kept in the state
//! directory (0600) and reused; each order publishes its key authorizations through a
//! callback (the node's plain HTTP front answers them) and withdraws them afterwards.

use std::path::{Path, PathBuf};
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};

use crate::TlsError;

/// Where to order from and where the account lives.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    pub directory: String,
    /// The ACME server's TLS root, when it is not a public one (Pebble's).
    pub root_ca: Option<PathBuf>,
    pub email: Option<String>,
    /// The account's credentials (its key among them), mode 0600.
    pub account_file: PathBuf,
}

/// A chain and key ordered from the ACME server.
pub struct Ordered {
    pub chain_pem: String,
    pub key_pem: String,
}

/// Orders a certificate for `names`. `publish(token, Some(key_authorization))` must make
/// `http://NAME/.well-known/acme-challenge/TOKEN` answer the key authorization until
/// `publish(token, None)`.
pub async fn order(
    settings: &AcmeSettings,
    names: &[String],
    publish: &(dyn Fn(&str, Option<&str>) + Send + Sync),
) -> Result<Ordered, TlsError> {
    let acme = |what: &str, e: instant_acme::Error| TlsError::Acme(format!("{what}: {e}"));
    let account = account(settings).await?;
    let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| acme("new order", e))?;
    let mut tokens = Vec::new();
    let result = async {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| acme("authorization", e))?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(TlsError::Acme(format!(
                        "authorization for {} is {other:?}",
                        authz.identifier()
                    )))
                }
            }
            let mut challenge = authz
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| TlsError::Acme("the ACME server offers no HTTP-01 challenge".into()))?;
            let key_authorization = challenge.key_authorization();
            publish(&challenge.token, Some(key_authorization.as_str()));
            tokens.push(challenge.token.clone());
            challenge
                .set_ready()
                .await
                .map_err(|e| acme("challenge ready", e))?;
        }
        let retry = RetryPolicy::new()
            .initial_delay(Duration::from_millis(100))
            .backoff(1.5)
            .timeout(Duration::from_secs(60));
        let status = order.poll_ready(&retry).await.map_err(|e| acme("order", e))?;
        if status != OrderStatus::Ready {
            return Err(TlsError::Acme(format!(
                "the order ended {status:?} (the validation request did not get the key authorization: is the site's HTTP port reachable at its name?)"
            )));
        }
        let key_pem = order.finalize().await.map_err(|e| acme("finalize", e))?;
        let chain_pem = order
            .poll_certificate(&retry)
            .await
            .map_err(|e| acme("certificate", e))?;
        Ok(Ordered { chain_pem, key_pem })
    }
    .await;
    for token in &tokens {
        publish(token, None);
    }
    result
}

/// The stack's ACME account: loaded from its file, or registered and saved.
async fn account(settings: &AcmeSettings) -> Result<Account, TlsError> {
    let builder = || {
        match &settings.root_ca {
            Some(root) => Account::builder_with_root(root),
            None => Account::builder(),
        }
        .map_err(|e| TlsError::Acme(format!("ACME client: {e}")))
    };
    if let Ok(text) = std::fs::read_to_string(&settings.account_file) {
        if let Ok(credentials) = serde_json::from_str::<AccountCredentials>(&text) {
            if let Ok(account) = builder()?.from_credentials(credentials).await {
                return Ok(account);
            }
        }
    }
    let contact: Vec<String> = settings
        .email
        .iter()
        .map(|e| format!("mailto:{e}"))
        .collect();
    let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            settings.directory.clone(),
            None,
        )
        .await
        .map_err(|e| {
            TlsError::Acme(format!(
                "registering an account at {}: {e}",
                settings.directory
            ))
        })?;
    let text =
        serde_json::to_string_pretty(&credentials).map_err(|e| TlsError::Acme(e.to_string()))?;
    if let Some(dir) = settings.account_file.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    crate::ca::write_private(&settings.account_file, text.as_bytes())?;
    Ok(account)
}

/// The account file of a stack's ACME endpoint in `dir`.
pub fn account_file(dir: &Path) -> PathBuf {
    dir.join("acme-account.json")
}
