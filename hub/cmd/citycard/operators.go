package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/citycard/citycard/hub/internal/operators"
)

func newOperatorsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "operators",
		Short: "Manage the operators who may call the API",
	}
	cmd.AddCommand(newOperatorsAddCmd())
	return group(cmd)
}

func newOperatorsAddCmd() *cobra.Command {
	roles := strings.Join(operators.Roles, "|")
	cmd := &cobra.Command{
		Use:   "add --name NAME --role " + roles,
		Short: "Add an operator and print its bearer token, once",
		Long: `add creates an operator and prints its bearer token. The hub keeps only a
hash of the token: it is shown this once and cannot be shown again.
README.md says what each role may do.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, _ := cmd.Flags().GetString("name")
			role, _ := cmd.Flags().GetString("role")
			if name == "" {
				return usageError("--name is required")
			}
			if !operators.ValidRole(role) {
				return usageError("--role must be one of %s, got %q", roles, role)
			}
			st, err := openStore(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			op, token, err := operators.Add(cmd.Context(), st, name, role)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "operator %s (%s) added\n", op.Name, op.Role)
			fmt.Fprintf(out, "token: %s\n", token)
			fmt.Fprintln(cmd.ErrOrStderr(), "Keep this token now: it will not be shown again. Pass it as \"Authorization: Bearer <token>\".")
			return nil
		},
	}
	cmd.Flags().String("name", "", "operator name: 1-64 letters, digits, '_', '.', '@' or '-'")
	cmd.Flags().String("role", "", "role: "+roles)
	addDBFlag(cmd.Flags())
	return cmd
}
