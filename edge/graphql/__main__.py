"""``python -m praxis.edge.graphql``: print the SDL."""

from praxis.edge.graphql.operations import schema

print(schema.as_str())
