//! Who the user is inside: the contents of `/etc/passwd` and `/etc/group`.
//!
//! The sandbox runs as the user's own uid and gid (bwrap maps them to themselves), but the
//! rootfs's own `passwd` names only system accounts, so `whoami`, `id -un`, git's default
//! identity, ssh and Python's `getpass` would fail or see a number. paude writes two small
//! files that name the user (with the host's name and home), root and nobody, and binds them
//! over the rootfs's. They hold no password hashes and no other account of the host.

use std::path::{Path, PathBuf};

/// The user as the host knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
    pub group: String,
    /// The home path (also `HOME` inside).
    pub home: PathBuf,
    /// The home the account database names, when it names one and it is not `home`.
    pub account_home: Option<PathBuf>,
}

impl User {
    /// The user `uid`/`gid` as the host's `passwd` and `group` texts name them; `fallback_name`
    /// (the host's `$USER`) and `fallback_home` (`$HOME`) when the databases do not.
    pub fn from_databases(
        uid: u32,
        gid: u32,
        passwd: &str,
        group: &str,
        fallback_name: Option<&str>,
        fallback_home: Option<&Path>,
    ) -> User {
        let entry = passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() >= 7 && fields[2].parse() == Ok(uid))
                .then(|| (fields[0].to_string(), PathBuf::from(fields[5])))
        });
        let group_name = group.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() >= 3 && fields[2].parse() == Ok(gid)).then(|| fields[0].to_string())
        });
        let name = entry
            .as_ref()
            .map(|(name, _)| name.clone())
            .or_else(|| fallback_name.filter(|n| valid_name(n)).map(str::to_string))
            .unwrap_or_else(|| if uid == 0 { "root" } else { "user" }.to_string());
        // `$HOME` wins over the database, as every shell and tool does.
        let account_home = entry
            .map(|(_, home)| home)
            .filter(|home| home.is_absolute());
        let home = fallback_home
            .filter(|home| home.is_absolute())
            .map(Path::to_path_buf)
            .or_else(|| account_home.clone())
            .unwrap_or_else(|| PathBuf::from(if uid == 0 { "/root" } else { "/home/user" }));
        User {
            uid,
            gid,
            group: group_name.unwrap_or_else(|| name.clone()),
            name,
            account_home: account_home.filter(|account| *account != home),
            home,
        }
    }

    /// `/etc/passwd` inside: root, the user (with `shell`), nobody.
    pub fn passwd(&self, shell: &str) -> String {
        let mut lines = Vec::new();
        if self.uid != 0 {
            lines.push("root:x:0:0:root:/root:/bin/sh".to_string());
        }
        lines.push(format!(
            "{name}:x:{uid}:{gid}:{name}:{home}:{shell}",
            name = self.name,
            uid = self.uid,
            gid = self.gid,
            home = self.home.display(),
        ));
        if self.uid != NOBODY {
            lines.push(format!(
                "nobody:x:{NOBODY}:{NOBODY}:nobody:/nonexistent:/usr/sbin/nologin"
            ));
        }
        lines.join("\n") + "\n"
    }

    /// `/etc/group` inside: root, the user's group, nogroup.
    pub fn group(&self) -> String {
        let mut lines = Vec::new();
        if self.gid != 0 {
            lines.push("root:x:0:".to_string());
        }
        lines.push(format!("{}:x:{}:", self.group, self.gid));
        if self.gid != NOBODY {
            lines.push(format!("nogroup:x:{NOBODY}:"));
        }
        lines.join("\n") + "\n"
    }
}

const NOBODY: u32 = 65534;

/// A name fit for a `passwd` line: no separator, no newline, not empty.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains([':', '\n', '/']) && name.len() <= 64
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
                          alice:x:1000:1000:Alice,,,:/home/alice:/bin/zsh\n\
                          broken line\n";
    const GROUP: &str = "root:x:0:\nstaff:x:1000:alice\n";

    #[test]
    fn the_user_is_named_as_the_host_names_them() {
        let user = User::from_databases(1000, 1000, PASSWD, GROUP, Some("ignored"), None);
        assert_eq!(user.name, "alice");
        assert_eq!(user.group, "staff");
        assert_eq!(user.home, PathBuf::from("/home/alice"));
        assert_eq!(
            user.passwd("/bin/bash"),
            "root:x:0:0:root:/root:/bin/sh\n\
             alice:x:1000:1000:alice:/home/alice:/bin/bash\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        );
        assert_eq!(user.group(), "root:x:0:\nstaff:x:1000:\nnogroup:x:65534:\n");
    }

    #[test]
    fn home_comes_from_the_environment_first_and_unknown_users_get_a_name() {
        let user = User::from_databases(
            4242,
            4242,
            PASSWD,
            GROUP,
            Some("ci"),
            Some(Path::new("/var/ci")),
        );
        assert_eq!((user.name.as_str(), user.group.as_str()), ("ci", "ci"));
        assert_eq!(user.home, PathBuf::from("/var/ci"));
        let odd = User::from_databases(4242, 4242, "", "", Some("a:b"), Some(Path::new("rel")));
        assert_eq!(odd.name, "user");
        assert_eq!(odd.home, PathBuf::from("/home/user"));
        let root = User::from_databases(0, 0, PASSWD, GROUP, None, None);
        assert_eq!(
            root.passwd("/bin/sh"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        );
        let nobody = User::from_databases(NOBODY, NOBODY, "", "", None, Some(Path::new("/tmp/h")));
        assert_eq!(nobody.group(), "root:x:0:\nuser:x:65534:\n");
    }
}
