//! How the database and add-ons reach the application: the application settings
//! (environment variables) each runtime reads, as Terraform expressions over the
//! modules' outputs. Values that are secrets are named once (`database-password`) and
//! referenced by name, so the template can make them Key Vault references when Key
//! Vault is chosen, container-app secrets on Container Apps, or plain sensitive
//! values otherwise. Nothing here is a secret value: only expressions.

use super::matrix::{Addon, Combination, Database, Runtime};

/// An application setting's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A Terraform expression (not secret).
    Plain(String),
    /// The name of a secret from [`Wiring::secrets`].
    Secret(&'static str),
}

#[derive(Debug, Clone, Default)]
pub struct Wiring {
    /// Setting name -> value, in the order written.
    pub settings: Vec<(String, Value)>,
    /// Secret name -> the Terraform expression that yields it (a sensitive output).
    pub secrets: Vec<(&'static str, &'static str)>,
}

/// Every secret any setting may use, with its expression.
const SECRETS: &[(&str, &str)] = &[
    ("database-password", "module.database.password"),
    ("database-url", "module.database.url"),
    (
        "database-connection-string",
        "module.database.ado_net_connection_string",
    ),
    ("mongodb-uri", "module.database.connection_string"),
    ("redis-password", "module.redis.primary_access_key"),
    ("redis-uri", "module.redis.uri"),
    (
        "appinsights-connection-string",
        "module.application_insights.connection_string",
    ),
];

impl Wiring {
    fn plain(&mut self, name: &str, expr: &str) {
        self.settings
            .push((name.to_string(), Value::Plain(expr.to_string())));
    }

    fn literal(&mut self, name: &str, text: &str) {
        self.plain(name, &format!("\"{text}\""));
    }

    fn secret(&mut self, name: &str, secret: &'static str) {
        self.settings
            .push((name.to_string(), Value::Secret(secret)));
        if !self.secrets.iter().any(|(s, _)| *s == secret)
            && let Some(&(s, expr)) = SECRETS.iter().find(|(s, _)| *s == secret)
        {
            self.secrets.push((s, expr));
        }
    }
}

/// The settings for a combination.
pub fn wiring(c: &Combination) -> Wiring {
    let mut w = Wiring::default();
    relational(&mut w, c.runtime, c.database);
    if c.database == Database::CosmosdbMongodb {
        let (uri, db) = match c.runtime {
            Runtime::SpringBoot => ("SPRING_DATA_MONGODB_URI", "SPRING_DATA_MONGODB_DATABASE"),
            Runtime::Quarkus => (
                "QUARKUS_MONGODB_CONNECTION_STRING",
                "QUARKUS_MONGODB_DATABASE",
            ),
            _ => ("MONGODB_URI", "MONGODB_DATABASE"),
        };
        w.secret(uri, "mongodb-uri");
        w.plain(db, "module.database.database_name");
    }
    if c.has(Addon::Redis) {
        match c.runtime {
            Runtime::SpringBoot => {
                w.plain("SPRING_DATA_REDIS_HOST", "module.redis.host");
                w.plain("SPRING_DATA_REDIS_PORT", "tostring(module.redis.port)");
                w.secret("SPRING_DATA_REDIS_PASSWORD", "redis-password");
                w.literal("SPRING_DATA_REDIS_SSL_ENABLED", "true");
            }
            Runtime::Quarkus => w.secret("QUARKUS_REDIS_HOSTS", "redis-uri"),
            Runtime::Micronaut => w.secret("REDIS_URI", "redis-uri"),
            _ => {
                w.plain("REDIS_HOST", "module.redis.host");
                w.plain("REDIS_PORT", "tostring(module.redis.port)");
                w.secret("REDIS_PASSWORD", "redis-password");
                w.secret("REDIS_URL", "redis-uri");
            }
        }
    }
    if c.has(Addon::StorageBlob) {
        // Reached with the application's managed identity: no key anywhere.
        if c.runtime == Runtime::SpringBoot {
            w.plain(
                "SPRING_CLOUD_AZURE_STORAGE_BLOB_ACCOUNT_NAME",
                "module.storage_blob.account_name",
            );
            w.plain(
                "SPRING_CLOUD_AZURE_STORAGE_BLOB_ENDPOINT",
                "module.storage_blob.blob_endpoint",
            );
            w.plain(
                "SPRING_CLOUD_AZURE_STORAGE_BLOB_CONTAINER_NAME",
                "module.storage_blob.container_name",
            );
        }
        w.plain(
            "AZURE_STORAGE_ACCOUNT_NAME",
            "module.storage_blob.account_name",
        );
        w.plain(
            "AZURE_STORAGE_BLOB_ENDPOINT",
            "module.storage_blob.blob_endpoint",
        );
        w.plain(
            "AZURE_STORAGE_CONTAINER_NAME",
            "module.storage_blob.container_name",
        );
    }
    if c.has(Addon::ApplicationInsights) {
        w.secret(
            "APPLICATIONINSIGHTS_CONNECTION_STRING",
            "appinsights-connection-string",
        );
    }
    w
}

/// PostgreSQL, MySQL and SQL Server, the way each runtime reads them.
fn relational(w: &mut Wiring, runtime: Runtime, database: Database) {
    let kind = match database {
        Database::Postgresql => "postgresql",
        Database::Mysql => "mysql",
        Database::SqlServer => "mssql",
        Database::None | Database::CosmosdbMongodb => return,
    };
    match runtime {
        Runtime::SpringBoot => {
            w.plain("SPRING_DATASOURCE_URL", "module.database.jdbc_url");
            w.plain("SPRING_DATASOURCE_USERNAME", "module.database.username");
            w.secret("SPRING_DATASOURCE_PASSWORD", "database-password");
        }
        Runtime::Quarkus => {
            w.literal("QUARKUS_DATASOURCE_DB_KIND", kind);
            w.plain("QUARKUS_DATASOURCE_JDBC_URL", "module.database.jdbc_url");
            w.plain("QUARKUS_DATASOURCE_USERNAME", "module.database.username");
            w.secret("QUARKUS_DATASOURCE_PASSWORD", "database-password");
        }
        Runtime::Micronaut => {
            w.plain("DATASOURCES_DEFAULT_URL", "module.database.jdbc_url");
            w.plain("DATASOURCES_DEFAULT_USERNAME", "module.database.username");
            w.secret("DATASOURCES_DEFAULT_PASSWORD", "database-password");
        }
        _ => {
            w.plain("DATABASE_HOST", "module.database.host");
            w.plain("DATABASE_PORT", "tostring(module.database.port)");
            w.plain("DATABASE_NAME", "module.database.database_name");
            w.plain("DATABASE_USERNAME", "module.database.username");
            w.secret("DATABASE_PASSWORD", "database-password");
            match runtime {
                Runtime::Java => w.plain("DATABASE_URL", "module.database.jdbc_url"),
                Runtime::Dotnet => {
                    w.secret("ConnectionStrings__Default", "database-connection-string")
                }
                _ => w.secret("DATABASE_URL", "database-url"),
            }
        }
    }
}

/// `key = value` lines with the `=` aligned as `terraform fmt` aligns them.
pub fn align<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Vec<String> {
    let width = pairs
        .iter()
        .map(|(k, _)| k.as_ref().chars().count())
        .max()
        .unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| {
            let k = k.as_ref();
            let pad = width - k.chars().count();
            format!("{k}{} = {}", " ".repeat(pad), v.as_ref())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::matrix::Target;

    fn names(c: &Combination) -> Vec<String> {
        wiring(c).settings.into_iter().map(|(n, _)| n).collect()
    }

    fn combo(runtime: Runtime, database: Database, addons: &[Addon]) -> Combination {
        Combination {
            target: Target::AppService,
            runtime,
            database,
            addons: addons.to_vec(),
        }
    }

    #[test]
    fn each_runtime_gets_its_own_variable_names() {
        let spring = names(&combo(Runtime::SpringBoot, Database::Postgresql, &[]));
        assert_eq!(
            spring,
            [
                "SPRING_DATASOURCE_URL",
                "SPRING_DATASOURCE_USERNAME",
                "SPRING_DATASOURCE_PASSWORD"
            ]
        );
        let quarkus = wiring(&combo(Runtime::Quarkus, Database::SqlServer, &[]));
        assert!(quarkus.settings.contains(&(
            "QUARKUS_DATASOURCE_DB_KIND".into(),
            Value::Plain("\"mssql\"".into())
        )));
        let node = wiring(&combo(Runtime::Node, Database::Mysql, &[Addon::Redis]));
        assert!(
            node.settings
                .contains(&("DATABASE_URL".into(), Value::Secret("database-url")))
        );
        assert!(
            node.settings
                .contains(&("REDIS_PASSWORD".into(), Value::Secret("redis-password")))
        );
        let dotnet = names(&combo(Runtime::Dotnet, Database::Postgresql, &[]));
        assert!(dotnet.contains(&"ConnectionStrings__Default".to_string()));
        let mongo = names(&combo(Runtime::SpringBoot, Database::CosmosdbMongodb, &[]));
        assert_eq!(
            mongo,
            ["SPRING_DATA_MONGODB_URI", "SPRING_DATA_MONGODB_DATABASE"]
        );
    }

    #[test]
    fn secrets_are_listed_once_and_only_when_used() {
        let w = wiring(&combo(
            Runtime::Node,
            Database::Postgresql,
            &[Addon::ApplicationInsights, Addon::Redis, Addon::StorageBlob],
        ));
        let secrets: Vec<_> = w.secrets.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            secrets,
            [
                "database-password",
                "database-url",
                "redis-password",
                "redis-uri",
                "appinsights-connection-string"
            ]
        );
        assert!(
            wiring(&combo(Runtime::Java, Database::None, &[Addon::StorageBlob]))
                .secrets
                .is_empty()
        );
    }

    #[test]
    fn alignment_matches_terraform_fmt() {
        assert_eq!(
            align(&[("a", "1"), ("long_name", "\"x\"")]),
            ["a         = 1", "long_name = \"x\""]
        );
    }
}
