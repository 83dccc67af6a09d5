"""`forge learn`: the learning loop. Agent runs are recorded with their quality signals in an
experience store; thresholds export the good ones, train, gate, deploy, watch and roll back."""
