//! The choices `nubes init` offers and which combinations of them are valid, as data.
//! The command line validates against [`check`], and the exhaustive template test
//! renders every combination [`all`] yields, so "every combination init accepts" is one
//! definition, not two.

use std::fmt;

use crate::error::{Error, Result};

/// Where the application runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    AppService,
    Functions,
    ContainerApps,
    StaticSite,
}

/// What the application is written in (for Java: which framework, since each one reads
/// its database settings from differently named variables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Runtime {
    SpringBoot,
    Quarkus,
    Micronaut,
    Java,
    Node,
    Python,
    Dotnet,
    Docker,
    Static,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Database {
    None,
    Postgresql,
    Mysql,
    SqlServer,
    CosmosdbMongodb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Addon {
    ApplicationInsights,
    KeyVault,
    Redis,
    StorageBlob,
}

/// Size of the resources: a Terraform variable (`tier`), so one environment can
/// override it in nubes.toml (`[environments.prod] vars = { tier = "premium" }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    Dev,
    Standard,
    Premium,
}

/// A name on the command line and in templates, and every value of the type.
pub trait Choice: Sized + Copy + PartialEq + 'static {
    const WHAT: &'static str;
    const FLAG: &'static str;
    const ALL: &'static [Self];
    fn name(self) -> &'static str;

    fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|v| v.name() == s.trim())
            .ok_or_else(|| {
                Error::input(format!("{} `{s}` is not known", Self::FLAG)).hint(format!(
                    "{}: {}",
                    Self::WHAT,
                    Self::ALL
                        .iter()
                        .map(|v| v.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }
}

macro_rules! choice {
    ($ty:ident, $what:literal, $flag:literal, [$($variant:ident => $name:literal),+ $(,)?]) => {
        impl Choice for $ty {
            const WHAT: &'static str = $what;
            const FLAG: &'static str = $flag;
            const ALL: &'static [Self] = &[$($ty::$variant),+];
            fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

choice!(Target, "targets", "--target", [
    AppService => "app-service",
    Functions => "functions",
    ContainerApps => "container-apps",
    StaticSite => "static-site",
]);
choice!(Runtime, "runtimes", "--runtime", [
    SpringBoot => "spring-boot",
    Quarkus => "quarkus",
    Micronaut => "micronaut",
    Java => "java",
    Node => "node",
    Python => "python",
    Dotnet => "dotnet",
    Docker => "docker",
    Static => "static",
]);
choice!(Database, "databases", "--database", [
    None => "none",
    Postgresql => "postgresql",
    Mysql => "mysql",
    SqlServer => "sql-server",
    CosmosdbMongodb => "cosmosdb-mongodb",
]);
choice!(Addon, "add-ons", "--addons", [
    ApplicationInsights => "application-insights",
    KeyVault => "key-vault",
    Redis => "redis",
    StorageBlob => "storage-blob",
]);
choice!(Tier, "tiers", "--tier", [
    Dev => "dev",
    Standard => "standard",
    Premium => "premium",
]);

impl Runtime {
    pub fn is_java(self) -> bool {
        matches!(
            self,
            Runtime::SpringBoot | Runtime::Quarkus | Runtime::Micronaut | Runtime::Java
        )
    }
}

impl Target {
    /// The runtimes this target can run, with the reason for the others.
    fn refuses(self, runtime: Runtime) -> Option<&'static str> {
        use Runtime::*;
        match (self, runtime) {
            (Target::StaticSite, Static | Node) => None,
            (Target::StaticSite, _) => Some(
                "a static site is files served from storage: only the static runtime (or node, \
                 building the files) fits; use --target app-service or container-apps for a server",
            ),
            (_, Static) => Some("static files are served by --target static-site"),
            (Target::Functions, SpringBoot | Quarkus | Micronaut) => Some(
                "Azure Functions runs function handlers, not a framework's web server; use \
                 --runtime java for Java functions, or --target app-service / container-apps",
            ),
            (Target::Functions | Target::AppService, Docker) => Some(
                "a Dockerfile-only application needs a container host: use --target container-apps",
            ),
            _ => None,
        }
    }
}

/// One set of choices (the tier is not part of it: it only sets a variable's default).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Combination {
    pub target: Target,
    pub runtime: Runtime,
    pub database: Database,
    /// Sorted, without duplicates.
    pub addons: Vec<Addon>,
}

impl Combination {
    pub fn has(&self, addon: Addon) -> bool {
        self.addons.contains(&addon)
    }

    /// A short identifier, e.g. `app-service.spring-boot.postgresql.key-vault+redis`.
    pub fn id(&self) -> String {
        let addons = if self.addons.is_empty() {
            "no-addons".to_string()
        } else {
            self.addons
                .iter()
                .map(|a| a.name())
                .collect::<Vec<_>>()
                .join("+")
        };
        format!(
            "{}.{}.{}.{addons}",
            self.target, self.runtime, self.database
        )
    }
}

/// Why a combination is refused, or `Ok`.
pub fn check(c: &Combination) -> Result<()> {
    if let Some(reason) = c.target.refuses(c.runtime) {
        return Err(Error::input(format!(
            "--target {} does not support --runtime {}",
            c.target, c.runtime
        ))
        .hint(reason));
    }
    if c.target == Target::StaticSite && c.database != Database::None {
        return Err(Error::input(format!(
            "--target static-site cannot use --database {}",
            c.database
        ))
        .hint("a static site has no server side to connect to a database; use --database none"));
    }
    if c.target == Target::StaticSite && !c.addons.is_empty() {
        return Err(Error::input(format!(
            "--target static-site cannot use --addons {}",
            c.addons
                .iter()
                .map(|a| a.name())
                .collect::<Vec<_>>()
                .join(",")
        ))
        .hint("a static site has no server side to wire add-ons into; leave --addons empty"));
    }
    Ok(())
}

/// Every combination `init` accepts, in a stable order.
pub fn all() -> Vec<Combination> {
    let mut out = Vec::new();
    for &target in Target::ALL {
        for &runtime in Runtime::ALL {
            for &database in Database::ALL {
                for mask in 0..(1u32 << Addon::ALL.len()) {
                    let addons: Vec<Addon> = Addon::ALL
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| mask & (1 << i) != 0)
                        .map(|(_, a)| *a)
                        .collect();
                    let c = Combination {
                        target,
                        runtime,
                        database,
                        addons,
                    };
                    if check(&c).is_ok() {
                        out.push(c);
                    }
                }
            }
        }
    }
    out
}

/// `a,b,c` into sorted, de-duplicated add-ons; `none` or empty is no add-on.
pub fn parse_addons(s: &str) -> Result<Vec<Addon>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part == "none" {
            continue;
        }
        out.push(Addon::parse(part)?);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrix_has_every_valid_combination_once() {
        let all = all();
        // app-service: 7 runtimes (not docker, not static); functions: 4 (java, node,
        // python, dotnet); container-apps: 8 (not static); each with 5 databases and 16
        // add-on sets; static-site: 2 runtimes, nothing else.
        assert_eq!(all.len(), (7 + 4 + 8) * 5 * 16 + 2);
        let ids: std::collections::BTreeSet<_> = all.iter().map(Combination::id).collect();
        assert_eq!(ids.len(), all.len());
    }

    #[test]
    fn invalid_combinations_say_why() {
        let c = |target, runtime, database, addons: &[Addon]| Combination {
            target,
            runtime,
            database,
            addons: addons.to_vec(),
        };
        let e = check(&c(
            Target::Functions,
            Runtime::SpringBoot,
            Database::None,
            &[],
        ))
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("does not support --runtime spring-boot")
        );
        assert_eq!(e.exit_code(), 2);
        let e = check(&c(
            Target::StaticSite,
            Runtime::Static,
            Database::Mysql,
            &[],
        ))
        .unwrap_err();
        assert!(e.hint_text().unwrap().contains("no server side"));
        let e = check(&c(Target::AppService, Runtime::Docker, Database::None, &[])).unwrap_err();
        assert!(e.hint_text().unwrap().contains("container-apps"));
        assert!(check(&c(Target::StaticSite, Runtime::Node, Database::None, &[])).is_ok());
    }

    #[test]
    fn names_parse_back_and_unknown_names_list_the_choices() {
        for &r in Runtime::ALL {
            assert_eq!(Runtime::parse(r.name()).unwrap(), r);
        }
        let e = Database::parse("oracle").unwrap_err();
        assert!(
            e.hint_text().unwrap().contains("postgresql, mysql"),
            "{e:?}"
        );
        assert_eq!(
            parse_addons("redis, key-vault,redis").unwrap(),
            [Addon::KeyVault, Addon::Redis]
        );
        assert!(parse_addons("none").unwrap().is_empty());
        assert!(parse_addons("kafka").is_err());
    }
}
