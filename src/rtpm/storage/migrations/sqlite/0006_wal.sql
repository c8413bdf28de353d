-- The write-ahead log of the head engine (RTPM_STORAGE_ENGINE=head): one row per group commit,
-- its samples as compressed columns (storage/wal.py). AUTOINCREMENT: an id is never reused after
-- the cut deletes the newest record, so a process tailing by "id > last seen" never misses one.
-- min_ts/max_ts bound the record's samples: the cut deletes records wholly below it.
CREATE TABLE wal_records (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    min_ts  INTEGER NOT NULL,
    max_ts  INTEGER NOT NULL,
    count   INTEGER NOT NULL,
    payload BLOB    NOT NULL
);
CREATE INDEX wal_records_max_ts ON wal_records (max_ts);
