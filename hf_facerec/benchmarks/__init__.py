"""The torch side of evaluation: find and read face benchmarks (:mod:`.registry`), embed their images once
with a cache (:mod:`.cache`), score and report them with the numpy metric core (:mod:`.runner`), and
write ``results.json``, ``results.md`` and the plots (:mod:`.outputs`). ``hf-facerec evaluate`` drives it."""
