-- Native histogram samples: one row per series per write (a flush's samples of that series),
-- encoded with storage/histograms.py; reads merge the rows of a range, the last written wins.
CREATE TABLE histogram_samples (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    series_id INTEGER NOT NULL,
    min_ts    INTEGER NOT NULL,
    max_ts    INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    data      BLOB    NOT NULL
);
CREATE INDEX histogram_samples_series ON histogram_samples (series_id, max_ts);

-- Exemplars, at most storage.histograms.EXEMPLARS_PER_SERIES per series (the newest kept).
-- value_bits holds the IEEE bits of the value (SQLite stores no NaN).
CREATE TABLE exemplars (
    series_id  INTEGER NOT NULL,
    ts         INTEGER NOT NULL,
    value_bits INTEGER NOT NULL,
    labels     TEXT    NOT NULL,
    PRIMARY KEY (series_id, ts, labels)
);
