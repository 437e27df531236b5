//! What `lab exercise` does to a server beyond the lab's own steps: a replica's source credentials changed in
//! place, and the first table of an application written on the primary.

use super::Db;
use crate::database::{Credentials, DbError};

impl Db {
    /// On a replica: its user and password for the source changed to `repl`, the position kept; replication is
    /// started again (stopped first: MariaDB refuses the change while a thread runs, error 1198).
    pub async fn set_source_credentials(&mut self, repl: &Credentials) -> Result<(), DbError> {
        self.remember(&repl.password);
        for statement in self.dialect.source_credentials(repl) {
            self.run("changing the replica's source credentials", &statement)
                .await?;
        }
        Ok(())
    }

    /// On the primary: `appdb.lab_exercise_orders` (re-)created with one row, logged for the replicas.
    pub async fn write_new_table(&mut self) -> Result<(), DbError> {
        // Conservatively assume `USE appdb` took effect, whatever fails after it.
        self.in_appdb = true;
        for statement in self.dialect.new_table() {
            self.run("creating a table in appdb", &statement).await?;
        }
        Ok(())
    }

    /// Whether `appdb.lab_exercise_orders` exists on this server.
    pub async fn has_new_table(&mut self) -> Result<bool, DbError> {
        let statement = self.dialect.has_new_table();
        let rows = self.rows("looking for a table in appdb", &statement).await?;
        let count = rows
            .first()
            .and_then(|row| row.first())
            .and_then(|(_, value)| value.as_deref())
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or(0);
        Ok(count > 0)
    }
}
