USE appdb;
CREATE TABLE IF NOT EXISTS replication_test (
  id INT PRIMARY KEY,
  msg VARCHAR(50)
);

INSERT INTO replication_test VALUES (1, 'written_on_primary');
SELECT * FROM replication_test;
