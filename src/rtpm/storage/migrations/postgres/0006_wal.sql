-- The write-ahead log of the head engine (RTPM_STORAGE_ENGINE=head): one row per group commit,
-- its samples as compressed columns (storage/wal.py). Ids come from the sequence while the writer
-- holds the WAL advisory lock until it commits, so id order is commit order and a process tailing
-- by "id > last seen" never skips a record that commits later. min_ts/max_ts bound the record's
-- samples: the cut deletes records wholly below it.
CREATE TABLE wal_records (
    id      BIGSERIAL PRIMARY KEY,
    min_ts  BIGINT  NOT NULL,
    max_ts  BIGINT  NOT NULL,
    count   INTEGER NOT NULL,
    payload BYTEA   NOT NULL
);
ALTER TABLE wal_records ALTER COLUMN payload SET STORAGE EXTERNAL;
CREATE INDEX wal_records_max_ts ON wal_records (max_ts);
