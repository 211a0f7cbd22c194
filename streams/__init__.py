"""The stream app (faust-streaming): recipient resolution, rules, deduplication, loop guard."""
