"""RV-Syn verifiable synthesis (Wang et al., 2025): a library of typed math functions, composed into
executable computational graphs, back-translated into word problems, verified, stored.

    sandbox/       run untrusted code: AST allow-list, restricted builtins, hardened worker pool
    pyast.py       ast.parse and compile behind one lock (CPython 3.11.7 races on them across threads)
    starter.py     the built-in library (functions, ranges, templates, worked examples)
    library.py     the library in the store; canonical.py, merge.py: duplicates found and merged
    extract.py     `synth library --from-source`: functions from seed problems with an LLM
    topics.py      topic tagging (keywords or an LLM)
    graph.py       the library as a networkx graph; sampling.py: the strategies over it
    compose.py     functions -> a program (typed composer, or an LLM's solution())
    values.py      executed value -> final answer, or the rejection reason
    backtranslate.py, verify.py   problem text and solution; LLM verification
    generate.py    `synth generate`: every stage, each attempt stored with its outcome
"""
