# A code step: this whole file runs for each call, with `inputs` and `outputs` in scope.
# Its inputs and outputs are declared in step.toml (name = "type code").
name = inputs.name
if not name:
    raise ValueError("name is required")  # stops the step; the error shows in its details

outputs.log(f"greeting {name}")  # timestamped; 8 KB per message, 100 KB per execution
outputs.greeting = f"Hello, {name}!"
