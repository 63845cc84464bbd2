"""`mmr3 build`: the MM-R³ benchmark and its training splits, rebuilt from the public sources.

What lives here, in the order a build runs:

- `cli` (the `mmr3 build` command) and `config` (BuildConfig, round-tripped to build_config.json);
- `sources/` (one reader per public source), `selection` (which groups a split gets) and
  `rephrase` (the rephrasings, cached);
- `render` (items -> groups of rows) over `images`, `masks`, `styles` and `onnx_patch`, with
  `labels` (answer spellings) and `rows` (rows checked and written as parquet);
- `shards` (written atomically, resumed), `manifest` (the folder's records), `build_report`,
  `card` (the dataset card) and `hub` (the upload), run in order by `pipeline.build`;
- `demo` (the bundled demo set) and `atomic` (atomic file writes).

The builder may import mmr3_tasks' core modules (schema, errors, imagecheck, data), never
mmr3_adapters, which builds on mmr3_tasks and not the other way round.
"""
