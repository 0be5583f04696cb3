"""Local fakes of the DataKitchen and ezCater APIs (filled in by the sandbox issue)."""
