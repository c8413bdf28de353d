-- Native histogram samples: one row per series per write (a flush's samples of that series),
-- encoded with storage/histograms.py; reads merge the rows of a range, the last written wins.
CREATE TABLE histogram_samples (
    id        BIGSERIAL PRIMARY KEY,
    series_id BIGINT  NOT NULL,
    min_ts    BIGINT  NOT NULL,
    max_ts    BIGINT  NOT NULL,
    count     INTEGER NOT NULL,
    data      BYTEA   NOT NULL
);
CREATE INDEX histogram_samples_series ON histogram_samples (series_id, max_ts);

-- Exemplars, at most storage.histograms.EXEMPLARS_PER_SERIES per series (the newest kept).
CREATE TABLE exemplars (
    series_id BIGINT           NOT NULL,
    ts        BIGINT           NOT NULL,
    value     DOUBLE PRECISION NOT NULL,
    labels    TEXT             NOT NULL,
    PRIMARY KEY (series_id, ts, labels)
);
