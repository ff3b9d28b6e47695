import { defineCommand } from "citty";
export default defineCommand({ meta: { name: "mcp", description: "(issue 16: in progress)" }, run() {} });
