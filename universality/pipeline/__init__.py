"""A run's pipeline: validated presets (:mod:`.config`), pure stages (:mod:`.stages`),
where jobs run (:mod:`.backends`) and the one writer (:mod:`.driver`)."""
