// A code step: this whole file runs for each call, with `inputs` and `outputs` in scope
// (and `await` at the top level). Its inputs and outputs are declared in step.toml.
const { name } = inputs;
if (!name) throw new Error('name is required'); // stops the step; the error shows in its details

outputs.log(`greeting ${name}`); // timestamped; 8 KB per message, 100 KB per execution
outputs.greeting = `Hello, ${name}!`;
