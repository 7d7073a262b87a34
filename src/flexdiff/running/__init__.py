"""Running a schedule: the executor that owns the clock and tells the hooks what each step is (:mod:`.executor`),
exact trajectory reuse between candidates (:mod:`.trajectory`), flexdiff's own sampling loop (:mod:`.own_loop`) and
what a schedule costs in MACs and seconds (:mod:`.cost`). Below it: models, hooks, schedules; above it: the
integrations that attach a schedule to a user's object, and everything that makes images for a search."""
