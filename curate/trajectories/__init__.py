"""Search-agent trajectories: parsing, format checks, measures and answer metrics.

- `parse`: the tags of each dialect (`Grammar`), the documents of each search engine's results,
  and `parse_steps` (response -> think/search/observation/answer/invalid/system steps);
- `answers`: the final answer, extracted from the response the way each dialect's code does;
- `checks`: each dialect's own strict format check, and a lenient one for all;
- `metrics`: SQuAD normalisation, EM, F1, cover-EM, and the retrieval check;
- `chatml`: decoded ChatML text;
- `record`: one rollout -> a `Sample` with its `trajectories` and `trajectory_steps` rows.

The dialect adapters (curate/formats/{search_r1,zerosearch,r1_searcher,simple_deep_searcher}.py)
read records into `record.Rollout`; the selector is curate/selectors/trajectory.py.
"""
